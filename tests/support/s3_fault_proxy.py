"""An HTTP proxy in front of moto_server that fails chosen S3 requests with S3's error XML."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

ERROR_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class S3FaultProxy:
    """Forwards everything to `upstream`, except PUTs whose path ends with `fail_suffix`."""

    def __init__(self, upstream: str, *, fail_suffix: str):
        self.upstream = upstream
        self.fail_suffix = fail_suffix
        self.failed = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and self.path.split("?")[0].endswith(proxy.fail_suffix):
                    proxy.failed += 1
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(ERROR_XML)))
                    self.end_headers()
                    self.wfile.write(ERROR_XML)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                resp = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    timeout=30,
                )
                self.send_response(resp.status_code)
                for key, value in resp.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
