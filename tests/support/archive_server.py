"""A real HTTP server on 127.0.0.1 over a directory, with faults that tests can inject."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class ArchiveServer:
    """Serves `root` like data.binance.vision; `fail(path, *faults)` queues faults for a path.

    Faults are consumed one per request: an int is an HTTP status to answer with, "stall"
    sleeps past any client timeout, "truncate" sends half the body, and bytes replace the body.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.faults: dict[str, deque] = defaultdict(deque)
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                queue = server.faults.get(self.path.lstrip("/"))
                fault = queue.popleft() if queue else None
                if fault is None:
                    return super().do_GET()
                if isinstance(fault, int):
                    self.send_error(fault)
                elif fault == "stall":
                    time.sleep(2)
                elif fault == "truncate":
                    body = (server.root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                elif isinstance(fault, bytes):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(fault)))
                    self.end_headers()
                    self.wfile.write(fault)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def fail(self, relpath: str, *faults) -> None:
        self.faults[relpath].extend(faults)

    def __enter__(self) -> ArchiveServer:
        self._thread.start()
        wait_for_http(self.url)
        self.requests.clear()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def wait_for_http(url: str, *, timeout_s: float = 30.0, process=None) -> None:
    """Polls url until it answers; fails early if the server process died."""
    import requests

    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        # not listening yet, or listening but too busy to answer (moto's first request loads
        # its backends, which takes seconds on a loaded machine)
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
