"""`klinecast serve` as a user runs it: a taken port is an error, and SIGTERM or SIGINT stop
both model servers."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import free_port
from tests.support.paths import REPO

pytestmark = pytest.mark.integration
KLINECAST = Path(sys.executable).parent / "klinecast"


def serve(artifact, predictor: int, transformer: int, tmp_path) -> subprocess.Popen:
    argv = [KLINECAST, "serve", "--params", REPO / "params.yaml", "--storage-uri", str(artifact)]
    argv += ["--predictor-port", str(predictor), "--transformer-port", str(transformer)]
    argv += ["--log-dir", str(tmp_path / "logs"), "--candles", str(tmp_path / "none.parquet")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_a_background_job,
    )  # fmt: skip


def as_a_background_job() -> None:
    """As a shell's background job (`klinecast serve &`) starts it: SIGINT ignored. SIGHUP at
    its default, whatever this test runs under (`nohup make test` would have it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def free(port: int) -> bool:
    """Whether a server could listen on the port now (as servers bind, with SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def test_a_taken_port_is_an_error_named_before_any_success_line(artifact, tmp_path):
    holder = socket.create_server(("0.0.0.0", free_port()))
    taken = holder.getsockname()[1]
    try:
        process = serve(artifact, free_port(), taken, tmp_path)
        out, err = process.communicate(timeout=60)
    finally:
        holder.close()
    assert process.returncode == 1
    assert f"klinecast serve: error: port {taken} is taken" in err
    assert "klinecast serve: model" not in out and "stopped" not in out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_both_servers(artifact, tmp_path, signum):
    ports = (free_port(), free_port())
    process = serve(artifact, *ports, tmp_path)
    started(process)
    assert not any(free(port) for port in ports)  # both servers hold their ports
    process.send_signal(signum)
    process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while not all(free(port) for port in ports):
        assert time.monotonic() < deadline, "a model server still holds its port"
        time.sleep(0.2)


def started(process: subprocess.Popen) -> list[str]:
    """stdout up to the ready banner's last line."""
    deadline = time.monotonic() + 90
    lines = []
    while not any(line.startswith("try:") for line in lines):
        line = process.stdout.readline()
        assert line or process.poll() is None, process.stderr.read()
        lines.append(line)
        assert time.monotonic() < deadline, lines
    return lines


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
def test_the_servers_die_with_serve_whatever_ends_it(artifact, tmp_path, signum):
    """SIGKILL cannot be caught: the kernel ends the children (their parent-death signal)."""
    ports = (free_port(), free_port())
    process = serve(artifact, *ports, tmp_path)
    started(process)
    process.send_signal(signum)
    process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while not all(free(port) for port in ports):
        assert time.monotonic() < deadline, "a model server outlived klinecast serve"
        time.sleep(0.2)


def test_one_port_for_both_servers_is_refused_before_anything_starts(artifact, tmp_path):
    port = free_port()
    began = time.monotonic()
    process = serve(artifact, port, port, tmp_path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"cannot share port {port}" in err and "klinecast serve: model" not in out
    assert not (tmp_path / "logs").exists()  # nothing was started
    assert time.monotonic() - began < 10


def test_each_serve_writes_logs_of_its_own(artifact, tmp_path):
    argv = [KLINECAST, "serve", "--params", REPO / "params.yaml", "--storage-uri", str(artifact),
            "--candles", str(tmp_path / "none.parquet")]  # fmt: skip
    processes = [
        subprocess.Popen(
            [*argv, "--predictor-port", str(free_port()), "--transformer-port", str(free_port())],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    try:
        banners = ["".join(started(p)) for p in processes]
    finally:
        for p in processes:
            p.terminate()
            p.wait(timeout=30)
    folders = {line.split("(logs: ")[1].rsplit("/", 1)[0] for b in banners
               for line in b.splitlines() if "(logs: " in line}  # fmt: skip
    assert len(folders) == 2
    for folder in folders:
        assert (tmp_path / folder / "transformer.log").is_file(), folder


def test_serve_follows_the_registrys_production_version(artifact, tmp_path):
    """`klinecast serve` serves the version PRODUCTION (whichever the pointer names when the
    servers read it), so a later promotion is served without a restart; without a production
    version, the candidate."""
    from klinecast.release import registry

    store = registry.LocalStore(tmp_path / "registry")
    fallback = tmp_path / "candidate"
    uri, why = registry.resolve_serving_uri(str(tmp_path / "registry"), "m", fallback=fallback)
    assert uri == str(fallback) and "no production version" in why
    receipt = registry.publish(artifact, store=store, model_name="m", promote=True)
    uri, why = registry.resolve_serving_uri(str(tmp_path / "registry"), "m", fallback=fallback)
    assert uri == f"{tmp_path / 'registry'}/m/versions/PRODUCTION"
    assert registry.follows_pointer(uri) and registry.resolve_pointer(uri) == receipt.uri
    assert receipt.version in why and "followed" in why
