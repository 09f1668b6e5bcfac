"""The Open Inference Protocol's own OpenAPI spec, fuzzed against both model servers with
schemathesis.

The spec (tests/support/specs/rest_predict_v2.yaml, KServe's) writes its path parameters as
`${MODEL_NAME}`; schemathesis gets a copy with `{MODEL_NAME}`, and every operation's model
name and version are fixed to the served model's, so the fuzzing reaches the inference code
instead of stopping at 404. Every check runs; the summary per server (operations, test cases,
failures by check, and the 5xx seen) goes to benchmarks/results/fuzz_serving.json, and
schemathesis' own reports beside it.

Usage: python benchmarks/fuzz_serving.py [--artifact models/BTCUSDT/candidate] [--seconds 120]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import requests

from klinecast.release import registry
from klinecast.serving.local import LocalServing

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "tests/support/specs/rest_predict_v2.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fuzz(url: str, *, model: str, version: str, seconds: int, out: Path) -> dict:
    """One schemathesis run against the server at url; its summary."""
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "spec.yaml"
    spec.write_text(re.sub(r"\$\{(\w+)\}", r"{\1}", SPEC.read_text()))
    config = out / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'"path.MODEL_NAME" = {json.dumps(model)}\n'
        f'"path.MODEL_VERSION" = {json.dumps(version)}\n'
    )
    argv = [
        str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run", str(spec),
        "--url", url, "--checks", "all", "--max-time", str(seconds), "--workers", "2",
        "--report", "ndjson", "--report-dir", str(out), "--continue-on-failure",
        "--suppress-health-check", "all",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 4 + 300)
    (out / "schemathesis.txt").write_text(done.stdout + done.stderr)
    return summarise(out, done)


def summarise(out: Path, done: subprocess.CompletedProcess) -> dict:
    """Test cases and statuses per operation, and failures per check, from the ndjson report."""
    statuses: Counter = Counter()
    failures: Counter = Counter()
    server_errors: Counter = Counter()
    cases = 0
    for path in out.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            for case in _cases(event):
                cases += 1
                status = case.get("status")
                statuses[str(status)] += 1
                if isinstance(status, int) and status >= 500:
                    server_errors[f"{status} {case.get('body', '')[:120]}"] += 1
            for failure in _failures(event):
                failures[failure] += 1
    tail = [line for line in done.stdout.splitlines() if line.strip()][-12:]
    return {
        "exit_code": done.returncode,
        "test_cases": cases,
        "statuses": dict(sorted(statuses.items())),
        "failures_by_check": dict(failures.most_common()),
        "server_errors": dict(server_errors.most_common(10)),
        "summary": tail,
    }


def _cases(event: dict):
    """Every recorded interaction (request and response) in an ndjson event, wherever it is."""
    if isinstance(event, dict):
        response = event.get("response")
        if isinstance(response, dict) and "status_code" in response:
            body = response.get("content") or response.get("body") or ""
            yield {"status": response["status_code"], "body": str(body)}
        for value in event.values():
            yield from _cases(value)
    elif isinstance(event, list):
        for item in event:
            yield from _cases(item)


def _failures(event):
    if isinstance(event, dict):
        if "failure_info" in event or ("check" in event and "status" in event):
            name = event.get("name") or event.get("check")
            if event.get("status") in ("failure", "FAILURE", "error") and isinstance(name, str):
                yield name
        for value in event.values():
            yield from _failures(value)
    elif isinstance(event, list):
        for item in event:
            yield from _failures(item)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artifact", type=Path, default=Path("models/BTCUSDT/candidate"))
    parser.add_argument("--seconds", type=int, default=120, help="per server")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz_serving.json"))
    args = parser.parse_args()
    metadata = registry.read_artifact_metadata(args.artifact)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        serving = LocalServing(
            metadata.model_name, str(args.artifact), free_port(), free_port(),
            log_dir=Path(tmp) / "logs",
        )  # fmt: skip
        with serving:
            answer = requests.get(f"{serving.predictor_url}/v2/models/{metadata.model_name}")
            answer.raise_for_status()
            for role in ("predictor", "transformer"):
                url = getattr(serving, f"{role}_url")
                version = _served_version(url, metadata.model_name)
                results[role] = fuzz(
                    url, model=metadata.model_name, version=version, seconds=args.seconds,
                    out=args.out.parent / f"fuzz_serving_{role}",
                )  # fmt: skip
                print(role, json.dumps(results[role], indent=2), flush=True)
        logs = {p.name: p.read_text() for p in (Path(tmp) / "logs").glob("*.log")}
    document = {
        "what": "schemathesis, every check, the Open Inference Protocol's OpenAPI spec",
        "seconds_per_server": args.seconds,
        "results": results,
        "tracebacks_in_server_logs": {n: text.count("Traceback") for n, text in logs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


def _served_version(url: str, model: str) -> str:
    """The version a server reports for the model (in its answers' model_version)."""
    from klinecast.serving.protocol import server_metadata  # noqa: F401 (the server's contract)

    answer = requests.post(f"{url}/v2/models/{model}/infer", json={"inputs": []}, timeout=30)
    if answer.ok:
        return answer.json()["model_version"]
    # a refused request carries no version: read it from the artifact's place in the registry
    message = requests.post(
        f"{url}/v2/models/{model}/versions/probe/infer", json={"inputs": []}, timeout=30
    ).json()["error"]
    return ast.literal_eval(message.split("it serves ")[1].split(" (or leave")[0])[0]


if __name__ == "__main__":
    raise SystemExit(main())
