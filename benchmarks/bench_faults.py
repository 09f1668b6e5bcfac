"""Serving under online-store faults: a real Redis stopped, then hung, under load.

A private redis-server (append-only file, so a restart keeps its rows) holds the candles'
feature rows; the real predictor and transformer serve the artifact, the transformer's store
reads bounded by params' online.timeout_ms. User threads ask in turn by symbol (the store), by
raw candles (no store) and on liveness, while the run goes through five phases:

  calm     the store answers
  stopped  redis-server is terminated (connections refused), then started again on its file
  recover  the store answers again
  hung     redis-server is frozen with SIGSTOP (connections accepted, nothing answered), then
           SIGCONT
  recover  the store answers again

Per phase and request kind it reports the status counts and p50/p99/max latency, and per
fault the seconds from the store's return to the first 200 by symbol; readiness is sampled
throughout. JSON in benchmarks/results/bench_faults.json.

Usage: python benchmarks/bench_faults.py [--artifact models/BTCUSDT/candidate] [--users 16]
           [--stopped 30] [--hung 30] [--calm 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from klinecast.config import load_params
from klinecast.indicators import fetch_hours
from klinecast.release import registry
from klinecast.serving import feature_sync
from klinecast.serving.client import v1_request, v1_symbol_request
from klinecast.serving.local import LocalServing
from klinecast.serving.online_store import StoreSettings

KINDS = ("symbol", "candles", "live")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the run's own, which can be stopped, started again and frozen."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise SystemExit("redis-server is missing; `make setup` installs it")
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="klinecast-faults-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.root,
             "--save", "", "--appendonly", "yes", "--appendfsync", "always"],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)

    def hang(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Record:
    """Every request of the run: when it started, its kind, status and latency."""

    rows: list[tuple[float, str, int, float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, started: float, kind: str, status: int, seconds: float, error: str) -> None:
        with self.lock:
            self.rows.append((started, kind, status, seconds, error))


def user(number: int, base: str, model: str, bodies: dict, record: Record, stop) -> None:
    """One user: asks by symbol, by candles and on liveness in turn until stop is set."""
    session = requests.Session()
    kind = KINDS[number % len(KINDS)]
    i = number
    while not stop.is_set():
        started = time.monotonic()
        try:
            if kind == "live":
                answer = session.get(f"{base}/v2/health/live", timeout=60)
            else:
                body = bodies[kind][i % len(bodies[kind])]
                answer = session.post(f"{base}/v1/models/{model}:predict", json=body, timeout=60)
            status, error = answer.status_code, answer.text[:200] if answer.status_code >= 400 else ""
        except requests.RequestException as exc:
            status, error = 0, type(exc).__name__
        record.add(started, kind, status, time.monotonic() - started, error)
        i += 1


def summary(rows: list, *, kind: str, start: float, stop: float) -> dict:
    picked = [r for r in rows if r[1] == kind and start <= r[0] < stop]
    ms = np.array([r[3] * 1000 for r in picked]) if picked else np.array([0.0])
    statuses = defaultdict(int)
    for r in picked:
        statuses[str(r[2])] += 1
    errors = sorted({r[4] for r in picked if r[4]})
    return {
        "requests": len(picked),
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "errors": errors[:3],
    }


def first_success_after(rows: list, moment: float) -> float | None:
    """Seconds from moment to the start of the first 200 by symbol."""
    times = [r[0] for r in rows if r[1] == "symbol" and r[2] == 200 and r[0] >= moment]
    return round(min(times) - moment, 2) if times else None


def run(
    *,
    artifact: Path,
    candles: pd.DataFrame,
    users: int,
    stopped_s: float,
    hung_s: float,
    calm_s: float,
    log_dir: Path,
) -> dict:
    """The whole fault run; returns the results document."""
    params = load_params()
    metadata = registry.read_artifact_metadata(artifact)
    history = metadata.min_history
    redis = PrivateRedis()
    redis.start()
    try:
        settings = StoreSettings(
            redis.address, str(log_dir / "feast" / "registry.db"), "faults",
            timeout_s=params.online.timeout_ms / 1000,
        )  # fmt: skip
        now = candles.index[-1] + pd.Timedelta(hours=1, minutes=5)
        feature_sync.sync(
            params,
            settings=settings,
            source=lambda symbol, interval, first, last: candles.loc[first:last],
            now=now,
        )
        # the last 20 windows: a window may hold a gap (the day-scale features span gaps), as
        # long as its last hours do not (the hourly ones restart), as the mirror's last do
        windows = [
            candles.iloc[end - history : end] for end in range(len(candles) - 19, len(candles) + 1)
        ]
        bodies = {
            "symbol": [v1_symbol_request(params.data.symbol)],
            "candles": [v1_request(w) for w in windows],
        }
        serving = LocalServing(
            metadata.model_name, str(artifact), free_port(), free_port(),
            log_dir=log_dir, online=settings, now=now.isoformat(),
        )  # fmt: skip
        with serving:
            record, stop = Record(), threading.Event()
            base = serving.transformer_url
            threads = [
                threading.Thread(
                    target=user, args=(n, base, metadata.model_name, bodies, record, stop)
                )
                for n in range(users)
            ]
            ready: list[tuple[float, bool]] = []

            def sample_readiness():
                while not stop.is_set():
                    try:
                        answer = requests.get(f"{base}/v2/health/ready", timeout=5)
                        ready.append((time.monotonic(), answer.status_code == 200))
                    except requests.RequestException:
                        ready.append((time.monotonic(), False))
                    stop.wait(0.5)

            threads.append(threading.Thread(target=sample_readiness))
            marks = {"calm": time.monotonic()}
            for thread in threads:
                thread.start()
            time.sleep(calm_s)
            marks["stopped"] = time.monotonic()
            redis.stop()
            time.sleep(stopped_s)
            redis.start()
            marks["recover_after_stop"] = time.monotonic()
            time.sleep(calm_s)
            marks["hung"] = time.monotonic()
            redis.hang()
            time.sleep(hung_s)
            redis.resume()
            marks["recover_after_hang"] = time.monotonic()
            time.sleep(calm_s)
            marks["end"] = time.monotonic()
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
    finally:
        redis.close()
    phases = list(marks)
    rows = record.rows
    return {
        "what": "serving while the online store is stopped, then hung, under load",
        "users": users,
        "store_timeout_ms": params.online.timeout_ms,
        "seconds": {"calm": calm_s, "stopped": stopped_s, "hung": hung_s},
        "phases": {
            phase: {
                kind: summary(rows, kind=kind, start=marks[phase], stop=marks[phases[i + 1]])
                for kind in KINDS
            }
            for i, phase in enumerate(phases[:-1])
        },
        "recovery_s": {
            "after_stop": first_success_after(rows, marks["recover_after_stop"]),
            "after_hang": first_success_after(rows, marks["recover_after_hang"]),
        },
        "ready_throughout": all(ok for _, ok in ready),
        "readiness_samples": len(ready),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artifact", type=Path, default=Path("models/BTCUSDT/candidate"))
    parser.add_argument("--candles", type=Path, default=Path("data/BTCUSDT/candles.parquet"))
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--stopped", type=float, default=30.0, help="seconds")
    parser.add_argument("--hung", type=float, default=30.0, help="seconds")
    parser.add_argument("--calm", type=float, default=10.0, help="seconds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_faults.json"))
    args = parser.parse_args()
    # what a sync fetches for the default features, and then some
    hours = fetch_hours(load_params().features.min_history) + 200
    candles = pd.read_parquet(args.candles).iloc[-hours:]
    with tempfile.TemporaryDirectory() as tmp:
        document = run(
            artifact=args.artifact, candles=candles, users=args.users, stopped_s=args.stopped,
            hung_s=args.hung, calm_s=args.calm, log_dir=Path(tmp),
        )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
