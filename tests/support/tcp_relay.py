"""A TCP relay on loopback: forwards every connection to an upstream address.

`cut()` drops every connection and refuses new ones, `restore()` lets them through again (a
server taken away and brought back, its data untouched); a fixed `port` puts a cluster Service's
port (80) in front of a server listening elsewhere.
"""

from __future__ import annotations

import socket
import threading


class TcpRelay:
    def __init__(self, upstream: str, *, port: int = 0):
        host, upstream_port = upstream.rsplit(":", 1)
        self.upstream = (host, int(upstream_port))
        self.listener = socket.create_server(("127.0.0.1", port))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = True
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, target):
                _shut(s)

    def cut(self) -> None:
        self.open = False
        with self.lock:
            for pair in self.pairs:
                for s in pair:
                    _shut(s)
            self.pairs.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
