"""`klinecast pipeline submit` against a local endpoint speaking the KFP v2beta1 REST API."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from klinecast.cli import main
from tests.support.kfp_api_server import KfpApiServer


@pytest.fixture()
def kfp_api(monkeypatch):
    monkeypatch.setenv("CI_COMMIT_SHORT_SHA", "abc1234")
    with KfpApiServer() as server:
        yield server


def test_submit_creates_the_experiment_and_a_run_named_with_the_commit(kfp_api, capsys):
    argv = ["pipeline", "submit", "--host", kfp_api.url, "--experiment", "nightly"]
    assert main([*argv, "--set", "tune.n_trials=80", "--set", "namespace=research"]) == 0
    assert "pipeline submit: run training-abc1234-" in capsys.readouterr().out
    (experiment,) = kfp_api.bodies("POST", "/apis/v2beta1/experiments")
    assert experiment["display_name"] == "nightly"
    (run,) = kfp_api.bodies("POST", "/apis/v2beta1/runs")
    assert run["experiment_id"] == "exp-1"
    assert run["display_name"].startswith("training-abc1234-")
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "klinecast-training"
    executors = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]
    assert "klinecast-postgres" in str(executors["executors"]["exec-tune"])  # the Secret
    parameters = run["runtime_config"]["parameters"]
    assert set(parameters) == {"tune", "namespace"} and parameters["namespace"] == "research"
    assert parameters["tune"]["n_trials"] == 80  # the whole section, with the one key changed
    assert parameters["tune"]["objective"] == "sharpe_after_fees"
    assert run["service_account"] == "klinecast-pipeline"  # bound to manifests/base's Role

    assert main([*argv, "--run-name", "second"]) == 0  # the experiment exists now: reused
    assert len(kfp_api.bodies("POST", "/apis/v2beta1/experiments")) == 1
    assert kfp_api.bodies("POST", "/apis/v2beta1/runs")[1]["display_name"] == "second"


def test_cron_creates_a_recurring_run_of_the_refresh_pipeline(kfp_api, capsys):
    argv = ["pipeline", "submit", "--host", kfp_api.url, "--pipeline", "refresh"]
    assert main([*argv, "--cron", "0 5 * * * *"]) == 0
    assert "recurring run job-1 (0 5 * * * *)" in capsys.readouterr().out
    (job,) = kfp_api.bodies("POST", "/apis/v2beta1/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 5 * * * *"
    # the refresh's sync step reads a ConfigMap, so the run carries a platform spec too
    assert job["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "klinecast-refresh"
    assert "klinecast-online" in str(job["pipeline_spec"]["platform_spec"])
    assert job["display_name"].startswith("refresh-abc1234-")
    assert job["service_account"] == "klinecast-pipeline"


def test_a_refused_run_is_a_clear_error(monkeypatch, capsys):
    with KfpApiServer(fail_runs_with=400) as server:
        assert main(["pipeline", "submit", "--host", server.url]) == 1
    err = capsys.readouterr().err
    assert f"KFP at {server.url} refused the run: HTTP 400" in err
    assert "pipeline spec is invalid" in err and "Traceback" not in err


def test_an_unreachable_host_is_a_clear_error(capsys):
    from tests.support.helpers import free_port

    assert main(["pipeline", "submit", "--host", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "refused the run" in capsys.readouterr().err


def test_ci_submits_a_run_of_the_commits_image(kfp_api):
    # What .gitlab-ci.yml's pipeline job does: the image is set when the pipeline compiles.
    image = "registry.gitlab.example.com/team/klinecast/pipeline:abc1234"
    env = os.environ | {"KLINECAST_PIPELINE_IMAGE": image}
    klinecast = str(Path(sys.executable).parent / "klinecast")
    argv = [klinecast, "pipeline", "submit", "--host", kfp_api.url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run,) = kfp_api.bodies("POST", "/apis/v2beta1/runs")
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {image}


def test_a_pooled_and_cross_asset_run_is_submitted_like_any_other(kfp_api, capsys):
    """What `dvc repro` can run, the pipelines run: no refusal of pooled or cross-asset params."""
    argv = ["pipeline", "submit", "--host", kfp_api.url, "--set", "tune.pooling=pooled"]
    argv += ["--set", "data.symbols=[BTCUSDT, ETHUSDT]"]
    assert main([*argv, "--set", "features.cross_asset=[log_return_1]"]) == 0
    (run,) = kfp_api.bodies("POST", "/apis/v2beta1/runs")
    parameters = run["runtime_config"]["parameters"]
    assert parameters["tune"]["pooling"] == "pooled"
    assert parameters["features"]["cross_asset"] == ["log_return_1"]


def test_the_retrain_trigger_submits_the_compiled_pipeline(kfp_api):
    """The monitor's kfp: target sends the package's compiled YAML, as it is checked in."""
    import yaml

    from klinecast.platform import retrain
    from klinecast.platform.kfp.runs import compiled

    started = retrain.trigger(
        f"kfp:{kfp_api.url}", reason="accuracy 40 % < 60 %", symbol="ETHUSDT"
    )
    assert started.startswith("KFP run retrain-ethusdt")
    (run,) = kfp_api.bodies("POST", "/apis/v2beta1/runs")
    spec, _ = yaml.safe_load_all(compiled("training").read_text())
    assert run["pipeline_spec"]["pipeline_spec"] == spec
