"""Serving benchmark: locust (headless CLI) against the real servers, and the in-process floor.

Paths, at a fixed user count, each reporting requests/s, p50/p95/p99 latency and failures (as
fast as the server answers, except the *_at_rate paths):
  predictor        HTTP V1 to the XGBoost predictor, one feature row per request;
  symbol           HTTP V1 to the transformer by symbol: the online store (Redis, through
                   Feast), the hour's cached answer after its first request;
  candles_*        HTTP to the transformer with min_history raw candles -> features ->
                   predictor (50 windows asked in turn, so after the first round the window
                   cache answers), in each form a client may send them:
                     v1_objects   V1, one object per candle (the form before the compact one);
                     v1_compact   V1 {"open_time": [...], "instances": [[9 numbers], ...]};
                     v2_json      V2 open_time INT64 [n] + candles FP64 [n, 9], JSON;
                     v2_binary    the same as binary tensors (tritonclient's default);
  *_uncached       the same with the transformer's cache off: every request computes and asks;
  *_at_rate        by symbol at 1,040 requests/s and V2 binary candles at 312 offered (AT_RATE)
                   by --rate-users users: the latency at the issue's target rates, where the
                   others show saturation;
  in_process       the same work as the candle paths as a plain function call (features +
                   booster.predict), the floor.
Beside them, `parse_ms`: what reading one body costs in process, for each form and for the way
kserve read a V2 JSON body before (FastAPI's json.loads, pydantic, lists): the levers apart.
With --book DIR (default build/example, where `make run-example` leaves the five symbols), one
service serving every symbol of DIR's params with its own model, by symbol:
  book_mix     each request one symbol, drawn from the five;
  book_batch   each request a batch of all five (V1 instances);
compared in the same run with `symbol` (one symbol, one model) as ratios.

The online store is a Feast project of the benchmark's own in the Redis of params.yaml's
`online` section ($KLINECAST_REDIS), synced from the candles up to their last hour; the
transformer's clock is fixed just after it. The project's keys are removed afterwards.

Usage: python benchmarks/bench_serve.py [--artifact models/BTCUSDT/candidate] [--users 16]
       [--rate-users 8] [--seconds 60]
       [--book build/example]
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import xgboost as xgb

from klinecast.book import Book
from klinecast.config import INTERVALS, load_params
from klinecast.release import registry
from klinecast.release.metadata import ArtifactMetadata
from klinecast.research.features import compute_features
from klinecast.serving import feature_sync, online_store
from klinecast.serving.client import (
    COLUMNS,
    v1_compact_request,
    v1_request,
    v1_symbol_request,
    v2_binary_request,
    v2_compact_request,
    v2_request,
)
from klinecast.serving.local import LocalServing

#: The latency targets are for a rate: the issue's p99 at the rate it asks for. At saturation a
#: closed loop's latency is its user count over its rate (Little's law), set by the benchmark's
#: 16 users, not by the server; so these paths offer the target rate and read p99 there, with
#: fewer users (--rate-users): locust is one process on one of the two cores, and at 1,000
#: requests/s its own scheduling of many users is what the tail measures (by symbol at 1,000
#: offered, 2026-12-05, 20 s each: p99 6 ms with 6 users, 9 with 8, 21 with 12, 28 with 16, 50
#: with 64, the server and the rate the same).
#: path -> (the target rate, the rate offered: 4 % more, as locust serves about 98 % of what it
#: offers over a run, its ramp-up included)
AT_RATE = {"symbol_at_rate": (1000.0, 1040.0), "candles_v2_binary_at_rate": (300.0, 312.0)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bodies(candles: pd.DataFrame, metadata: ArtifactMetadata, n: int) -> dict:
    names, history = list(metadata.feature_names), metadata.min_history
    interval = INTERVALS[metadata.interval]
    # only windows without an exchange gap: a gap is (rightly) a 400
    step = pd.Timedelta(interval).value
    contiguous = pd.Series(np.diff(candles.index.asi8, prepend=0) == step)
    run = contiguous.groupby((~contiguous).cumsum()).cumsum().to_numpy()
    eligible = np.flatnonzero(run >= history)
    ends = eligible[np.linspace(0, len(eligible) - 1, n).astype(int)]
    made = {kind: [] for kind in ("transformer", "compact", "v2_compact", "binary", "predictor")}
    for end in ends:
        window = candles.iloc[end - history + 1 : end + 1]
        made["transformer"].append(v1_request(window))
        made["compact"].append(v1_compact_request(window))
        made["v2_compact"].append(v2_compact_request(window))
        body, headers = v2_binary_request(window)
        made["binary"].append(
            {"body": base64.b64encode(body).decode(),
             "json_length": int(headers["Inference-Header-Content-Length"])}
        )  # fmt: skip
        row = compute_features(window, indicators=names, interval=interval).frame[names].iloc[-1:]
        made["predictor"].append({"instances": row.to_numpy().tolist()})
    return made


def parse_ms(candles: pd.DataFrame, metadata: ArtifactMetadata, *, repeat: int = 30) -> dict:
    """What reading one window's body costs in process, per form: the JSON or binary decoding
    and the candle frame, before the features; and kserve's own V2 JSON reading (json.loads,
    pydantic, lists), which the servers used before."""
    from kserve.protocol.infer_type import InferRequest
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    from klinecast.serving import payload
    from klinecast.serving.v2_request import read

    window = candles.iloc[-metadata.min_history :]
    required = tuple(COLUMNS)
    v1_objects = json.dumps(v1_request(window)).encode()
    v1_compact = json.dumps(v1_compact_request(window)).encode()
    v2_columns = json.dumps(v2_request(window)).encode()
    v2_json = json.dumps(v2_compact_request(window)).encode()
    binary, headers = v2_binary_request(window)
    headers = {k.lower(): v for k, v in headers.items()}

    def kserve_v2_columns():
        document = InferenceRequest.model_validate(json.loads(v2_columns))
        request = InferRequest.from_inference_request(document, "m")
        return payload.candles_from_v2(request.inputs, required=required)

    cases = {
        "v1_objects": lambda: payload.candles_from_v1(orjson.loads(v1_objects), required=required),
        "v1_compact": lambda: payload.candles_from_v1(orjson.loads(v1_compact), required=required),
        "v2_columns_kserve_json": kserve_v2_columns,
        "v2_columns": lambda: payload.candles_from_v2(read(v2_columns, {}, model_name="m").inputs, required=required),
        "v2_json": lambda: payload.candles_from_v2(read(v2_json, {}, model_name="m").inputs),
        "v2_binary": lambda: payload.candles_from_v2(read(binary, headers, model_name="m").inputs),
    }  # fmt: skip
    timings = {}
    for name, case in cases.items():
        case()
        started = time.perf_counter()
        for _ in range(repeat):
            case()
        timings[name] = round((time.perf_counter() - started) / repeat * 1000, 3)
    sizes = {"v1_objects": len(v1_objects), "v1_compact": len(v1_compact),
             "v2_columns": len(v2_columns), "v2_json": len(v2_json), "v2_binary": len(binary)}  # fmt: skip
    return {"ms": timings, "body_bytes": sizes}


def synced_store(candles: pd.DataFrame, project: str):
    """A Feast project of the benchmark's own, synced up to the candles' last hour; the clock."""
    params = load_params()
    settings = online_store.StoreSettings.of(params.online)
    settings = online_store.StoreSettings(
        settings.redis, str(Path(tempfile.mkdtemp()) / "registry.db"), project
    )
    now = candles.index[-1] + pd.Timedelta(hours=1, minutes=5)

    def from_frame(symbol, interval, first, last):
        return candles.loc[first:last]

    feature_sync.sync(params, settings=settings, source=from_frame, now=now)
    return settings, now.isoformat()


def book_case(book: Path, project: str):
    """The five-symbol service: its storage URI, store (synced from each symbol's candles up to
    their common last hour), clock, service name and bodies."""
    params = load_params(book / "params.yaml")
    settings = online_store.StoreSettings.of(params.online)
    settings = online_store.StoreSettings(
        settings.redis, str(Path(tempfile.mkdtemp()) / "registry.db"), project
    )
    candles = {s: pd.read_parquet(book / "data" / s / "candles.parquet") for s in params.data.symbols}
    last = min(frame.index[-1] for frame in candles.values())
    now = last + pd.Timedelta(hours=1, minutes=5)
    for symbol, frame in candles.items():

        def from_frame(_symbol, interval, first, last, frame=frame):
            return frame.loc[first:last]

        feature_sync.sync(
            Book(params).for_symbol(symbol), settings=settings, source=from_frame, now=now
        )
    layout = Book(params).files
    storage = Book(params).storage_string(lambda s: str(book / layout(s).candidate))
    service = Book(params).service_name
    bodies = {
        "book_model_name": service,
        "mix": [v1_symbol_request(s) for s in params.data.symbols],
        "batch": [{"instances": [{"symbol": s} for s in params.data.symbols]}],
    }
    return storage, settings, now.isoformat(), service, bodies


def drop_project(settings) -> None:
    import redis

    host, port = settings.redis.split(",")[0].rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    for key in client.scan_iter():
        if settings.project.encode() in key:
            client.delete(key)


def run_locust(
    user_class: str, host: str, bodies_path: Path, *, users: int, seconds: int, rate: float = 0
) -> dict:
    """One path under locust: as fast as the server answers, or offering `rate` requests/s in
    all (each user rate/users)."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "stats"
        locust = Path(sys.executable).parent / "locust"
        subprocess.run(
            [
                locust,
                "-f",
                str(Path(__file__).with_name("locustfile.py")),
                user_class,
                "--headless",
                "-u",
                str(users),
                "-r",
                str(users),
                "-t",
                f"{seconds}s",
                "--host",
                host,
                "--csv",
                str(prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            env={**os.environ, "BENCH_BODIES": str(bodies_path), "BENCH_USER_RATE": str(rate / users)},
            check=False,
            capture_output=True,
            timeout=seconds + 60,
        )
        rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))  # noqa: SIM115
        failures = [
            {"error": r["Error"][:200], "occurrences": int(r["Occurrences"])}
            for r in csv.DictReader(open(f"{prefix}_failures.csv"))  # noqa: SIM115
        ]
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "rps": round(float(total["Requests/s"]), 1),
        "p50_ms": float(total["50%"]),
        "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]),
        "failure_kinds": failures,
    }


def in_process(
    candles_bodies: list[dict], artifact: Path, metadata: ArtifactMetadata, *, seconds: float
) -> dict:
    """The floor: parse nothing over HTTP; features + predict as one function call."""
    booster = xgb.Booster()
    booster.load_model(str(artifact / registry.MODEL_FILE))
    booster.set_param({"nthread": 1})  # as the predictor serves it
    names, interval = list(metadata.feature_names), INTERVALS[metadata.interval]
    windows = []
    for body in candles_bodies:
        rows = body["instances"]
        index = pd.DatetimeIndex(
            pd.to_datetime([r["open_time"] for r in rows], unit="ms", utc=True)
        )
        windows.append(
            pd.DataFrame({c: [r[c] for r in rows] for c in COLUMNS}, index=index)
        )
    latencies = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        window = windows[i % len(windows)]
        started = time.perf_counter()
        row = (
            compute_features(window, indicators=names, interval=interval)
            .frame[names]
            .to_numpy()[-1:]
        )
        booster.predict(xgb.DMatrix(row), validate_features=False)
        latencies.append((time.perf_counter() - started) * 1000)
        i += 1
    ms = np.array(latencies)
    return {
        "requests": len(ms),
        "failures": 0,
        "rps": round(len(ms) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artifact", type=Path, default=Path("models/BTCUSDT/candidate"))
    parser.add_argument("--candles", type=Path, default=Path("data/BTCUSDT/candles.parquet"))
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument(
        "--rate-users", type=int, default=8, help="locust users offering the *_at_rate paths"
    )
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_serve.json"))
    parser.add_argument(
        "--book", type=Path, default=Path("build/example"),
        help="a `make run-example` worktree: the five-symbol case runs when it holds models",
    )  # fmt: skip
    args = parser.parse_args()

    started_load = [round(x, 2) for x in os.getloadavg()]
    metadata = registry.read_artifact_metadata(args.artifact)
    candles = pd.read_parquet(args.candles)
    prepared = bodies(candles, metadata, n=50) | {"model_name": metadata.model_name}
    symbol = load_params().data.symbol
    prepared["symbol"] = [v1_symbol_request(symbol)]
    settings, clock = synced_store(candles, f"bench{os.getpid()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        bodies_path = Path(tmp) / "bodies.json"
        bodies_path.write_text(json.dumps(prepared))
        serving = LocalServing(
            metadata.model_name, str(args.artifact), free_port(), free_port(),
            log_dir=Path(tmp) / "logs", online=settings, now=clock,
        )  # fmt: skip
        uncached = LocalServing(
            metadata.model_name, str(args.artifact), free_port(), free_port(),
            log_dir=Path(tmp) / "logs-uncached", transformer_args=["--cache-size", "0"],
        )  # fmt: skip
        # (path, servers, locust user, which server) in the order they run
        runs = [
            ("predictor", serving, "PredictorUser", "predictor_url"),
            ("symbol", serving, "SymbolUser", "transformer_url"),
            ("candles_v1_objects", serving, "TransformerUser", "transformer_url"),
            ("candles_v1_compact", serving, "CompactUser", "transformer_url"),
            ("candles_v2_json", serving, "V2CompactUser", "transformer_url"),
            ("candles_v2_binary", serving, "BinaryUser", "transformer_url"),
            ("symbol_at_rate", serving, "SymbolUser", "transformer_url"),
            ("candles_v2_binary_at_rate", serving, "BinaryUser", "transformer_url"),
            ("candles_v1_objects_uncached", uncached, "TransformerUser", "transformer_url"),
            ("candles_v2_binary_uncached", uncached, "BinaryUser", "transformer_url"),
        ]
        for servers in (serving, uncached):
            with servers:
                for path, used, user, url in runs:
                    if used is servers:
                        results[path] = run_locust(
                            user, getattr(servers, url), bodies_path,
                            users=args.rate_users if path in AT_RATE else args.users,
                            seconds=args.seconds, rate=AT_RATE.get(path, (0, 0))[1],
                        )  # fmt: skip
                        print(f"{path:13s}", results[path], flush=True)
        if (args.book / "models").is_dir():
            storage, book_store, book_clock, book_name, book_bodies = book_case(
                args.book, f"bench{os.getpid()}book"
            )
            prepared |= book_bodies
            bodies_path.write_text(json.dumps(prepared))
            with LocalServing(
                book_name, storage, free_port(), free_port(), log_dir=Path(tmp) / "logs-book",
                online=book_store, now=book_clock,
            ) as book:  # fmt: skip
                for path, user in (("book_mix", "MixUser"), ("book_batch", "BatchUser")):
                    results[path] = run_locust(
                        user, book.transformer_url, bodies_path, users=args.users,
                        seconds=args.seconds,
                    )  # fmt: skip
                    print(f"{path:13s}", results[path], flush=True)
            drop_project(book_store)
    drop_project(settings)
    parsing = parse_ms(candles, metadata)
    print("parse_ms", parsing, flush=True)
    results["in_process"] = in_process(prepared["transformer"], args.artifact, metadata, seconds=10)
    print("in_process", results["in_process"], flush=True)
    floor = results["in_process"]
    document = {
        "what": "serving benchmark: locust against the predictor and the transformer, and the in-process floor",
        "machine": {
            # how quiet the shared machine was: the load averages when the run began and ended
            "load_average_at_start": started_load,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "users": args.users,
        "rate_users": args.rate_users,
        "seconds": args.seconds,
        "candles_per_request": metadata.min_history,
        "results": results,
        "ratios_vs_in_process": {
            path: {
                "p50": round(r["p50_ms"] / floor["p50_ms"], 1),
                "rps": round(floor["rps"] / max(r["rps"], 1e-9), 2),
            }
            for path, r in results.items()
            if path != "in_process"
        },
        "book_vs_one_symbol": {
            path: {
                "rps": round(results[path]["rps"] / max(results["symbol"]["rps"], 1e-9), 2),
                "symbols_per_s": round(
                    results[path]["rps"]
                    * (len(prepared["batch"][0]["instances"]) if path == "book_batch" else 1)
                    / max(results["symbol"]["rps"], 1e-9), 2,
                ),
                "p50": round(results[path]["p50_ms"] / max(results["symbol"]["p50_ms"], 1e-9), 2),
            }
            for path in ("book_mix", "book_batch")
            if path in results
        },
        "levers": {
            "compact_vs_objects_rps": _ratio(results, "candles_v1_compact", "candles_v1_objects"),
            "binary_vs_objects_rps": _ratio(results, "candles_v2_binary", "candles_v1_objects"),
            "binary_vs_v2_json_rps": _ratio(results, "candles_v2_binary", "candles_v2_json"),
            "cache_binary_rps": _ratio(results, "candles_v2_binary", "candles_v2_binary_uncached"),
            "binary_vs_objects_uncached_rps": _ratio(
                results, "candles_v2_binary_uncached", "candles_v1_objects_uncached"
            ),
        },
        "parse_ms": parsing,
        # the rate at saturation; p99 while the target rate is offered, and that it was served
        "offered_rps": {path: offered for path, (_, offered) in AT_RATE.items()},
        "targets": {
            "symbol_rps_at_least_1000": results["symbol"]["rps"] >= 1000,
            "symbol_p99_below_25ms_at_1000": _at_rate(results, "symbol_at_rate", 25),
            "candles_binary_rps_at_least_300": results["candles_v2_binary"]["rps"] >= 300,
            "candles_binary_p99_below_50ms_at_300": _at_rate(results, "candles_v2_binary_at_rate", 50),
            "zero_failures": all(r["failures"] == 0 for r in results.values()),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: document[k] for k in ("ratios_vs_in_process", "levers", "parse_ms", "targets")}, indent=2))
    return 0


def _at_rate(results: dict, path: str, p99_ms: float) -> bool:
    """path served at least its target rate, with a p99 under p99_ms."""
    target, _ = AT_RATE[path]
    return results[path]["rps"] >= target and results[path]["p99_ms"] < p99_ms


def _ratio(results: dict, path: str, against: str) -> float:
    """path's requests/s over against's, in this run."""
    return round(results[path]["rps"] / max(results[against]["rps"], 1e-9), 2)


if __name__ == "__main__":
    sys.exit(main())
