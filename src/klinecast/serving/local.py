"""Running the predictor and the transformer as local processes (`klinecast serve`, tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import requests

from klinecast.environment import variable_of
from klinecast.errors import KlinecastError
from klinecast.serving.client import v1_request, v2_request


@dataclass
class LocalServing:
    """The two model-server processes; a context manager that waits until both are ready."""

    model_name: str
    storage_uri: str
    predictor_port: int
    transformer_port: int
    predictor_protocol: str = "v1"
    log_dir: Path | None = None
    #: the transformer's online store (klinecast.serving.online_store.StoreSettings), for symbol requests
    online: object | None = None
    #: a fixed clock for the transformer (replays of past hours), ISO 8601
    now: str | None = None
    #: the transformer's staleness tolerance (online.stale_after_minutes), None: its default
    stale_after_minutes: int | None = None
    #: more flags for the transformer, e.g. ["--cache-size", "0"]
    transformer_args: list[str] = field(default_factory=list)
    #: how often both servers read the registry's production pointers (None: their default)
    poll_seconds: float | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def predictor_url(self) -> str:
        return f"http://127.0.0.1:{self.predictor_port}"

    @property
    def transformer_url(self) -> str:
        return f"http://127.0.0.1:{self.transformer_port}"

    def start(self, role: str) -> None:
        port = self.predictor_port if role == "predictor" else self.transformer_port
        # not the caller's online store: only what this object says
        env = {k: v for k, v in os.environ.items() if k != variable_of("online.redis")}
        env["PYTHONUNBUFFERED"] = "1"
        argv = [
            sys.executable,
            "-m",
            "klinecast.serving.server",
            role,
            "--model-name",
            self.model_name,
            "--storage-uri",
            self.storage_uri,
            "--http-port",
            str(port),
        ]
        if self.poll_seconds is not None:
            argv += ["--poll-seconds", str(self.poll_seconds)]
        if role == "transformer":
            argv += [
                "--predictor-host",
                f"127.0.0.1:{self.predictor_port}",
                "--predictor-protocol",
                self.predictor_protocol,
            ]
            if self.online is not None:  # the connection string (maybe a password): not in argv
                env[variable_of("online.redis")] = self.online.redis
                argv += ["--feast-registry", self.online.registry]
                argv += ["--feast-project", self.online.project]
                if self.online.timeout_s is not None:
                    argv += ["--store-timeout-ms", str(round(self.online.timeout_s * 1000))]
            if self.stale_after_minutes is not None:
                argv += ["--stale-after-minutes", str(self.stale_after_minutes)]
            if self.now is not None:
                argv += ["--now", self.now]
            argv += self.transformer_args
        out = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{role}.log", "ab")  # noqa: SIM115 - lives with the process
        self.processes[role] = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )

    def stop(self, role: str) -> None:
        process = self.processes.pop(role, None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def wait_until_up(self, url: str, *, timeout_s: float = 60.0, ready: bool = True) -> None:
        """Waits for the server at url to answer (and, with ready, for the model to be ready)."""
        deadline = time.monotonic() + timeout_s
        probe = f"{url}/v2/health/ready" if ready else f"{url}/"  # every model it serves
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes.values()):
                raise KlinecastError(f"a model server exited early; see its log in {self.log_dir}")
            try:
                if requests.get(probe, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise KlinecastError(f"{probe} did not become ready within {timeout_s:.0f} s")

    def __enter__(self) -> LocalServing:
        if self.predictor_port == self.transformer_port:
            raise KlinecastError(
                f"the predictor and the transformer cannot share port {self.predictor_port}; "
                "give them two (--predictor-port / --transformer-port)"
            )
        for port in (self.predictor_port, self.transformer_port):
            check_port_free(port)
        self.start("predictor")
        self.start("transformer")
        try:
            self.wait_until_up(self.predictor_url)
            self.wait_until_up(self.transformer_url)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for role in list(self.processes):
            self.stop(role)


def _die_with_parent() -> None:
    """In the child, before it runs: the kernel sends it SIGTERM when the process that started
    it dies, however that dies (SIGKILL and SIGHUP included), so no server outlives its
    `klinecast serve` holding its port."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def check_port_free(port: int) -> None:
    """Fails, naming the port, when another process holds it (the servers bind 0.0.0.0)."""
    with socket.socket() as probe:
        # as the servers bind: a connection of an earlier server in TIME_WAIT does not count
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            raise KlinecastError(
                f"port {port} is taken ({exc.strerror}); stop what holds it or pick another "
                "port (--predictor-port / --transformer-port)"
            ) from None


def write_examples(candles: pd.DataFrame, out_dir: Path, *, symbol: str) -> tuple[Path, Path]:
    """V1 and V2 request bodies of the symbol's candles, named as its own (`klinecast serve`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    v1, v2 = out_dir / "request-v1.json", out_dir / "request-v2.json"
    v1.write_text(json.dumps({"symbol": symbol, **v1_request(candles)}))
    v2.write_text(json.dumps({**v2_request(candles), "parameters": {"symbol": symbol}}))
    return v1, v2
