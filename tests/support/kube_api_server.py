"""A local HTTP endpoint speaking the Kubernetes API's wire format for custom objects.

Only what `klinecast deploy` uses: GET and JSON-merge-patch PATCH of namespaced objects, with
resourceVersion conflicts (409) and Status bodies for errors, as the real API server sends them.
"""

from __future__ import annotations

import copy
import json

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
        super().__init__(self._handler())

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
                server.objects[self.path] = updated
                self._send(200, updated)

        return Handler
