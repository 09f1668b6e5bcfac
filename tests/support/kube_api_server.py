"""A local HTTP endpoint speaking the Kubernetes API's wire format for custom objects.

Only what `klinecast deploy` uses: GET and JSON-merge-patch PATCH of namespaced objects, with
resourceVersion conflicts (409) and Status bodies for errors, as the real API server sends them;
and a watch of a collection (`?watch=true`, with a fieldSelector on metadata.name): one JSON
event per line, ADDED for the object as it is, then MODIFIED for each change, until
timeoutSeconds.

A controller (`controller`: the object after a patch -> its new status, or None) stands in for
the operator that reconciles the object: it writes the status shortly after each patch, as
KServe's controller does, and the watchers see that change too.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from urllib.parse import parse_qs, urlparse

from tests.support.local_http import JsonHandler, LocalServer


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class KubeApiServer(LocalServer):
    def __init__(self, objects: dict[str, dict], *, token: str = "test-token"):
        """objects: API path -> object, e.g. /apis/serving.kserve.io/v1beta1/namespaces/ns/..."""
        self.objects = copy.deepcopy(objects)
        self.token = token
        self.requests: list[dict] = []
        self.forbid_patch = False
        #: object after a patch -> its status as the operator would write it (None: no change)
        self.controller = None
        self.changed = threading.Condition()
        super().__init__(self._handler())

    def reconcile(self, path: str) -> None:
        """What the operator does after a patch: writes the object's status (a new
        resourceVersion), a moment later, and wakes the watchers."""
        time.sleep(0.05)
        with self.changed:
            status = self.controller(copy.deepcopy(self.objects[path]))
            if status is not None:
                current = self.objects[path]
                current["status"] = status
                current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
            self.changed.notify_all()

    def watch(self, handler, path: str, query: dict) -> None:
        """Streams the named object's events on the collection path until timeoutSeconds."""
        name = query.get("fieldSelector", [""])[0].removeprefix("metadata.name=")
        key = f"{path}/{name}"
        deadline = time.monotonic() + float(query.get("timeoutSeconds", ["30"])[0])
        handler.protocol_version = "HTTP/1.1"  # chunked, as the API server streams a watch
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        seen, kind = None, "ADDED"
        while time.monotonic() < deadline:
            with self.changed:
                current = self.objects.get(key)
                version = current["metadata"]["resourceVersion"] if current else None
                if version == seen:
                    self.changed.wait(timeout=0.2)
                    continue
                event = {"type": kind, "object": copy.deepcopy(current)}
            line = json.dumps(event).encode() + b"\n"
            try:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                handler.wfile.flush()
            except OSError:  # the client stopped watching
                return
            seen, kind = version, "MODIFIED"
        try:
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

    def point_at(self, tmp_path, monkeypatch) -> None:
        """Makes this endpoint the cluster a test's commands find: a kubeconfig file in
        tmp_path named by $KUBECONFIG, and no in-cluster credentials."""
        import yaml

        config = tmp_path / "kubeconfig"
        config.write_text(yaml.safe_dump(self.kubeconfig()))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(config))

    def kubeconfig(self) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.url}}],
            "users": [{"name": "pipeline", "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "pipeline"}}],
            "current-context": "local",
        }

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            def _status(self, code: int, reason: str, message: str) -> None:
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
                self._send(code, body | {"reason": reason, "message": message, "code": code})

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {server.token}":
                    return True
                self._status(401, "Unauthorized", "Unauthorized")
                return False

            def do_GET(self):
                server.requests.append({"method": "GET", "path": self.path})
                if not self._authorized():
                    return
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if query.get("watch", [""])[0].lower() in ("true", "1"):
                    return server.watch(self, url.path, query)
                if self.path not in server.objects:
                    return self._status(404, "NotFound", f"{self.path} not found")
                self._send(200, server.objects[self.path])

            def do_PATCH(self):
                length = int(self.headers.get("Content-Length") or 0)
                patch = json.loads(self.rfile.read(length) or b"{}")
                content_type = self.headers.get("Content-Type", "")
                server.requests.append(
                    {"method": "PATCH", "path": self.path, "type": content_type, "body": patch}
                )
                if not self._authorized():
                    return
                if server.forbid_patch:
                    return self._status(403, "Forbidden", "cannot patch inferenceservices")
                if self.path not in server.objects:
                    return self._status(404, "NotFound", f"{self.path} not found")
                if content_type != "application/merge-patch+json":
                    return self._status(415, "UnsupportedMediaType", content_type)
                current = server.objects[self.path]
                version = (patch.get("metadata") or {}).get("resourceVersion")
                if version and version != current["metadata"]["resourceVersion"]:
                    return self._status(409, "Conflict", "the object has been modified")
                updated = merge_patch(current, patch)
                updated["metadata"]["resourceVersion"] = str(
                    int(current["metadata"]["resourceVersion"]) + 1
                )
                with server.changed:
                    server.objects[self.path] = updated
                    server.changed.notify_all()
                self._send(200, updated)
                if server.controller is not None:
                    threading.Thread(target=server.reconcile, args=(self.path,), daemon=True).start()

        return Handler
