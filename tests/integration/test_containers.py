"""Both images built for real (`make images`, podman) and their containers run with what the
rendered manifests give them.

On a machine that cannot (not root, or no way to install podman) every test here is skipped,
visibly, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.helpers import explain, free_port, why_no_containers
from tests.support.kustomize import find, overlay
from tests.support.paths import REPO
from tests.support.tcp_relay import TcpRelay

# a cold `make images` (debootstrap, two builds) may take longer than the suite's 600 s per test
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(1800)]
IMAGES = REPO / "build" / "images"
PIPELINE, SERVING = "localhost/klinecast/pipeline:dev", "localhost/klinecast/serving:dev"
#: Environment values and history lines that would be a leaked credential.
SECRET_SHAPES = re.compile(
    r"(?i)(AWS_SECRET_ACCESS_KEY|BINANCE_API_SECRET|BINANCE_API_KEY|PASSWORD|TOKEN)=\S|"
    r"postgresql://[^:/@\s]+:[^@\s]+@|AKIA[0-9A-Z]{16}"
)


def podman(*argv, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTAINERS_CONF": str(IMAGES / "containers.conf")}
    done = subprocess.run(
        ["podman", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert done.returncode == 0, f"podman {argv}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def images() -> dict:
    reason = why_no_containers()
    if reason:
        pytest.skip(f"the container tests need {reason}")
    done = subprocess.run(
        ["make", "images"], cwd=REPO, capture_output=True, text=True, timeout=3000
    )
    assert done.returncode == 0, explain(done)
    return json.loads((IMAGES / "images.json").read_text())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], "usage: klinecast"),
        (["--version"], "klinecast 0.1.0"),
        (["trade", "--help"], "usage: klinecast trade"),
        (["pipeline", "--help"], "usage: klinecast pipeline"),
    ],
)
def test_the_pipeline_image_runs_its_commands(images, argv, expected):
    assert expected in podman("run", "--rm", PIPELINE, *argv).stdout


@pytest.mark.parametrize("image", [PIPELINE, SERVING])
def test_both_images_run_as_10001_with_a_home_and_no_pip_leftovers(images, image):
    script = 'id -u; test -d "$HOME" && test -w "$HOME" && test ! -e /etc/pip.conf && echo ok'
    out = podman("run", "--rm", "--entrypoint", "sh", image, "-c", script).stdout.split()
    assert out == ["10001", "ok"]


def leaks(image: str) -> list[str]:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    lines = inspected["Config"].get("Env", []) + history.splitlines()
    return [line for line in lines if SECRET_SHAPES.search(line)]


@pytest.mark.parametrize("image", [PIPELINE, SERVING])
def test_no_secret_in_the_images_environment_or_history(images, image):
    assert leaks(image) == []
    assert SECRET_SHAPES.search("ENV BINANCE_API_SECRET=abc")  # the check can fail
    assert SECRET_SHAPES.search("ledger postgresql://trader:hunter2@db/ledger")


def test_app_params_is_the_repos(images):
    shown = podman("run", "--rm", "--entrypoint", "cat", PIPELINE, "/app/params.yaml").stdout
    assert shown == (REPO / "params.yaml").read_text()


def test_the_images_stay_within_the_size_the_docs_state(images):
    stated = {
        name: float(size.replace(",", ""))
        for name, size in re.findall(
            r"^\| (pipeline|serving) image \| ([\d,.]+) MB \|",
            (REPO / "docs/deploying.md").read_text(),
            re.M,
        )
    }
    assert set(stated) == {"pipeline", "serving"}, "docs/deploying.md states both image sizes"
    for name in stated:
        megabytes = images[name]["bytes"] / 1e6
        assert megabytes <= 1.10 * stated[name], f"{name}: {megabytes:.0f} MB > 110 % of docs/deploying.md"


def container_flags(container: dict, pod: dict) -> list[str]:
    """podman flags for the rendered securityContext (user, read-only root, capabilities) and
    volumes: an emptyDir mount becomes a tmpfs there, and nothing else is writable."""
    security = container.get("securityContext", {})
    flags = (
        ["--security-opt", "no-new-privileges"]
        if not security.get("allowPrivilegeEscalation", True)
        else []
    )
    if security.get("runAsUser") is not None:
        flags += ["--user", str(security["runAsUser"])]
    if security.get("readOnlyRootFilesystem"):
        # podman's --read-only alone mounts tmpfs on /tmp, /var/tmp and /run; a pod has none
        flags += ["--read-only", "--read-only-tmpfs=false"]
    for capability in security.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", capability]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        assert "emptyDir" in volumes[mount["name"]], f"no stand-in for volume {mount['name']}"
        flags += ["--tmpfs", mount["mountPath"]]
    return flags


def env_flags(container: dict, objects, given: dict[str, str]) -> list[str]:
    """-e for what the rendered container's env and envFrom give it: values as rendered (a
    ConfigMap's from the rendered overlay), references as `given` fills them; `given` may also
    replace a rendered value with a loopback stand-in, but only for a key the pod has."""
    rendered = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            rendered |= find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            secret = find(objects, "Secret", source["secretRef"]["name"])
            rendered |= dict.fromkeys(
                secret["metadata"]["annotations"]["klinecast.io/keys"].split(",")
            )
    for entry in container.get("env", []):
        rendered[entry["name"]] = entry.get("value")
    unknown = sorted(set(given) - set(rendered))
    assert not unknown, f"the rendered pod has no {unknown}"
    values = rendered | given
    return [
        arg
        for name, value in values.items()
        if value is not None
        for arg in ("-e", f"{name}={value}")
    ]


class Running:
    """podman run -d ... as a context manager that always removes the container."""

    def __init__(self, *argv):
        self.argv = argv
        self.id = None

    def __enter__(self):
        self.id = podman("run", "-d", *self.argv).stdout.strip()
        return self

    def logs(self) -> str:
        done = podman("logs", self.id, check=False)
        return done.stdout + done.stderr

    def __exit__(self, *exc):
        podman("rm", "-f", "-t", "2", self.id, check=False)


def wait_until_ready(url: str, *containers: Running, seconds: float = 120) -> None:
    """Poll `url` until it answers 200; on time-out fail with the containers' logs."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"{url} never ready:\n" + "".join(
            c.logs() for c in containers
        )
        time.sleep(0.5)


def moved_to_end(mirror_candles, last):
    """The mirror's 2021 candles, as many as a sync fetches for the default features (the
    day-scale ones need 4,900 hours), moved to end at the hour `last`."""
    import pandas as pd

    from klinecast.config import Params
    from klinecast.indicators import fetch_hours

    hours = fetch_hours(Params().features.min_history)
    history = mirror_candles.loc[:"2021-12-31 23:00"].iloc[-hours:].copy()
    history.index = pd.date_range(end=last, periods=hours, freq="h", tz="UTC", name="open_time")
    return history


def test_the_serving_containers_run_as_the_inferenceservice_renders_them(
    images, artifact, window, mirror_candles, online_settings
):
    """The transformer container exactly as rendered (command, args, env and envFrom, port,
    securityContext, volumes), plus what KServe's controller injects (--model_name,
    --predictor_host, --http_port); the model artifact mounted where the storage initializer
    puts it, /mnt/models. Its online store's ConfigMap keys point at loopback stand-ins: the
    test's Redis key space and a Feast registry file. Both components read the book's models
    from $KLINECAST_MODELS; here it names the mounted artifact instead of the registry's S3
    version, the one value the test replaces."""
    import pandas as pd

    from klinecast.config import Params
    from klinecast.serving import feature_sync
    from klinecast.serving.client import v1_request, v2_request
    from klinecast.serving.offline import offline_probabilities
    from tests.support.binance_server import BinanceServer

    objects = overlay("prod")
    isvc = find(objects, "InferenceService", "klinecast")
    name = isvc["metadata"]["name"]
    (transformer,) = isvc["spec"]["transformer"]["containers"]
    (predictor_container,) = isvc["spec"]["predictor"]["containers"]
    assert predictor_container["args"][0] == "predictor" and transformer["args"][0] == "transformer"
    models = {"KLINECAST_MODELS": "BTCUSDT=/mnt/models"}  # the mounted artifact, not S3

    # the store holds the mirror's candles moved to end at the hour that just closed
    now = pd.Timestamp.now(tz="UTC")
    history = moved_to_end(mirror_candles, now.floor("h") - pd.Timedelta(hours=1))
    with BinanceServer(history) as exchange:
        feature_sync.sync(
            Params(),
            settings=online_settings,
            source=feature_sync.binance_source(exchange.url),
            now=now,
        )
    registry_dir = Path(online_settings.registry).parent
    store = {
        "KLINECAST_REDIS": online_settings.redis,
        "KLINECAST_FEAST_REGISTRY": "/feast/registry.db",
        "KLINECAST_FEAST_PROJECT": online_settings.project,
    }

    predictor_port, transformer_port = free_port(), free_port()
    mount = ["-v", f"{artifact}:/mnt/models:ro"]
    with Running(
        *mount,
        *container_flags(predictor_container, isvc["spec"]["predictor"]),
        *env_flags(predictor_container, objects, models),
        predictor_container["image"].replace("registry.example.com/klinecast/serving:0.1.0", SERVING),
        *predictor_container["args"],
        f"--http_port={predictor_port}",
    ) as predictor, Running(  # fmt: skip
        *mount,
        "-v", f"{registry_dir}:/feast:ro",
        *container_flags(transformer, isvc["spec"]["transformer"]),
        *env_flags(transformer, objects, store | models),
        transformer["image"].replace("registry.example.com/klinecast/serving:0.1.0", SERVING),
        *transformer["args"],
        f"--model_name={name}",
        f"--predictor_host=127.0.0.1:{predictor_port}",
        f"--http_port={transformer_port}",
    ) as container:  # fmt: skip
        base = f"http://127.0.0.1:{transformer_port}"
        # The transformer is ready before its predictor may be: wait for both, as KServe's
        # readiness probes do, or the first request races the predictor's start-up.
        for port in (predictor_port, transformer_port):
            wait_until_ready(f"http://127.0.0.1:{port}/v2/health/ready", predictor, container)
        # the book's service: candles name their symbol (V1 beside instances, V2 in parameters)
        one = requests.post(
            f"{base}/v1/models/{name}:predict",
            json={"symbol": "BTCUSDT"} | v1_request(window),
            timeout=30,
        )
        two = requests.post(
            f"{base}/v2/models/{name}/infer",
            json={"parameters": {"symbol": "BTCUSDT"}} | v2_request(window),
            timeout=30,
        )
        by_symbol = requests.post(
            f"{base}/v1/models/{name}:predict",
            json={"instances": [{"symbol": "BTCUSDT"}]},
            timeout=30,
        )
        logs = container.logs()
        assert one.status_code == two.status_code == by_symbol.status_code == 200, (
            one.text + two.text + by_symbol.text + logs[-3000:]
        )
    expected = offline_probabilities(mirror_candles.loc[: window.index[-1]], artifact).iloc[-1]
    assert one.json()["predictions"][0]["prob_up"] == pytest.approx(expected, abs=1e-6)
    v2_prob = next(o["data"][0] for o in two.json()["outputs"] if o["name"] == "prob_up")
    assert v2_prob == pytest.approx(expected, abs=1e-6)
    answer = by_symbol.json()["predictions"][0]
    newest = offline_probabilities(history, artifact)
    assert answer["feature_time"] == (newest.index[-1] + pd.Timedelta(hours=1)).isoformat()
    assert answer["prob_up"] == pytest.approx(newest.iloc[-1], abs=1e-6)


def test_the_trader_cronjob_trades_one_paper_hour_as_rendered(
    images, artifact, mirror_candles, online_settings, postgres, tmp_path
):
    """The dev overlay's CronJob container (paper broker), as rendered: its image, args,
    securityContext, env values, and its Secret references filled as the Secrets would fill
    them (the ledger: a PostgreSQL database). Cluster names resolve to loopback (--add-host),
    where the model servers and a Binance REST endpoint answer; the market is the mirror's
    candles moved to end at the hour that just closed, so the container trades now."""
    import pandas as pd

    from klinecast.config import Params
    from klinecast.serving import feature_sync
    from klinecast.serving.local import LocalServing
    from tests.support.binance_server import BinanceServer
    from tests.support.helpers import drop_ledger, table

    cronjob = find(overlay("dev"), "CronJob", "klinecast-trader")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KLINECAST_BROKER"]["value"] == "paper"
    url = env["KLINECAST_INFERENCE_URL"]["value"]
    host = url.removeprefix("http://").split("/")[0]
    assert ":" not in host  # the Service's port 80

    now = pd.Timestamp.now(tz="UTC")
    last = now.floor("h") - pd.Timedelta(hours=1)
    history = moved_to_end(mirror_candles, last)
    model_name = Params().publish.service_name  # what /app/params.yaml asks the service for
    drop_ledger(postgres)
    with BinanceServer(history) as exchange:
        source = feature_sync.binance_source(exchange.url)
        feature_sync.sync(Params(), settings=online_settings, source=source, now=now)
        with LocalServing(
            model_name, str(artifact), free_port(), free_port(), log_dir=tmp_path / "logs",
            online=online_settings,
        ) as serving:  # fmt: skip
            # the Service's port 80 (uid 10001 may not bind it) in front of the transformer
            forward = TcpRelay(f"127.0.0.1:{serving.transformer_port}", port=80)
            try:
                run = [
                    "run", "--rm", "--add-host", f"{host}:127.0.0.1",
                    *container_flags(container, pod),
                    *env_flags(container, overlay("dev"), {"KLINECAST_LEDGER_URL": postgres}),
                    "-e", f"KLINECAST_BINANCE_URL={exchange.url}",  # the test endpoint
                    container["image"].replace("registry.example.com/klinecast/pipeline:0.1.0", PIPELINE),
                    *container["args"],
                ]  # fmt: skip
                first = podman(*run, check=False)
                second = podman(*run, check=False)
            finally:
                forward.close()
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"hour {last:%Y-%m-%d %H:%M} UTC: traded" in first.stdout
    assert second.returncode == 0 and "already_traded" in second.stdout
    (prediction,) = table(postgres, "predictions")
    assert prediction["status"] == "traded"
    assert len(table(postgres, "orders")) == (1 if prediction["target"] else 0)
    assert exchange.order_posts() == 0  # paper: nothing reached the exchange's order endpoint


def test_the_monitor_cronjob_reports_the_ledger_as_rendered(images, postgres):
    """The dev overlay's monitor CronJob container, as rendered, on a PostgreSQL ledger holding
    two settled hours: it reads them and reports, exit 0, with no network besides the ledger."""
    import datetime as dt

    from klinecast.trader.ledger import Ledger
    from tests.support.helpers import drop_ledger

    cronjob = find(overlay("dev"), "CronJob", "klinecast-monitor")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    drop_ledger(postgres)
    ledger = Ledger(postgres)
    ledger.migrate()
    start = dt.datetime(2022, 5, 31, 20, tzinfo=dt.UTC)
    for i, ret in enumerate((0.01, -0.005)):
        hour = start + dt.timedelta(hours=i)
        ledger.record_prediction(hour, symbol="BTCUSDT", prob_up=0.6, target=1, status="traded")
        ledger.record_outcome(
            {"hour": hour, "symbol": "BTCUSDT", "close": 1.0, "next_close": 1.0 + ret,
             "actual_up": ret > 0, "target": 1, "correct": ret > 0, "strategy_return": ret,
             "market_return": ret},
            equity_row={"hour": hour, "equity": 1 + ret, "buy_and_hold": 1 + ret},
        )  # fmt: skip
    run = [
        "run", "--rm", *container_flags(container, pod),
        *env_flags(container, overlay("dev"), {"KLINECAST_LEDGER_URL": postgres}),
        container["image"].replace("registry.example.com/klinecast/pipeline:0.1.0", PIPELINE),
        *container["args"],
    ]  # fmt: skip
    done = podman(*run, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "monitor: BTCUSDT: 2 trades, accuracy 50%" in done.stdout
