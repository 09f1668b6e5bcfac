"""A local HTTP endpoint speaking the KFP v2beta1 REST API, for what `pipeline submit` sends.

The real API server needs a Kubernetes cluster. This one answers healthz, lists and creates
experiments, and creates runs and recurring runs, recording every request body.
"""

from __future__ import annotations

import json

from tests.support.local_http import JsonHandler, LocalServer


class KfpApiServer(LocalServer):
    def __init__(self, *, fail_runs_with: int | None = None):
        self.requests: list[tuple[str, str, dict]] = []
        self.experiments: dict[str, str] = {}  # display name -> id
        self.fail_runs_with = fail_runs_with
        super().__init__(self._handler())

    def bodies(self, method: str, path: str) -> list[dict]:
        return [b for m, p, b in self.requests if m == method and p.startswith(path)]

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            def do_GET(self):
                server.requests.append(("GET", self.path, {}))
                if self.path.startswith("/apis/v2beta1/healthz"):
                    return self._send(200, {"multi_user": False})
                if self.path.startswith("/apis/v2beta1/experiments"):
                    found = [
                        {"experiment_id": i, "display_name": n}
                        for n, i in server.experiments.items()
                        if f"%22{n}%22" in self.path
                    ]
                    return self._send(200, {"experiments": found, "total_size": len(found)})
                self._send(404, {"error": "not found", "code": 5})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(("POST", self.path, body))
                if self.path == "/apis/v2beta1/experiments":
                    experiment_id = f"exp-{len(server.experiments) + 1}"
                    server.experiments[body["display_name"]] = experiment_id
                    return self._send(200, body | {"experiment_id": experiment_id})
                if server.fail_runs_with:
                    error = {"error": "pipeline spec is invalid", "code": 3}
                    return self._send(server.fail_runs_with, error)
                if self.path == "/apis/v2beta1/runs":
                    return self._send(200, body | {"run_id": "run-1", "state": "PENDING"})
                if self.path == "/apis/v2beta1/recurringruns":
                    return self._send(
                        200, body | {"recurring_run_id": "job-1", "status": "ENABLED"}
                    )
                self._send(404, {"error": "not found", "code": 5})

        return Handler
