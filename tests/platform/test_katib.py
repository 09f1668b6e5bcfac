"""The Katib Experiment generated from params.yaml, and the trial command it runs."""

import copy
import dataclasses

import pandas as pd
import pytest
import yaml

from klinecast.cli import main
from klinecast.config import Params, SearchSpace
from klinecast.platform import katib
from klinecast.research import tuning
from klinecast.research.backtest import walk_forward_with_params
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.strategy import StrategyRule
from tests.support.helpers import write_cli_params, write_params
from tests.support.kustomize import crd_validator
from tests.support.model_fixtures import small_features, small_params
from tests.support.paths import REPO

COMMITTED = REPO / "manifests" / "base" / "katib-experiment.yaml"


@pytest.fixture(scope="module")
def validator():
    return crd_validator("Experiment")  # Katib's OpenAPI-derived schema


def test_committed_experiment_is_current(tmp_path):
    out = tmp_path / "experiment.yaml"
    assert main(["katib", "--params", str(REPO / "params.yaml"), "--out", str(out)]) == 0
    assert out.read_text() == COMMITTED.read_text(), "stale: run `klinecast katib`"


def test_experiment_validates_and_the_check_can_fail(validator):
    document = yaml.safe_load(COMMITTED.read_text())
    assert list(validator.iter_errors(document)) == []
    broken = copy.deepcopy(document)
    broken["spec"]["parameters"] = {"nEstimators": [350, 1000]}
    assert list(validator.iter_errors(broken))
    broken = copy.deepcopy(document)
    broken["spec"]["maxTrialCount"] = "forty"
    assert list(validator.iter_errors(broken))


def test_search_space_has_one_source_of_truth():
    params = Params()
    spec = katib.experiment(params, image="img:1")["spec"]
    space = dataclasses.asdict(params.tune.search_space)
    assert set(katib.trial_parameters()) == set(space)  # every lever of the search
    log_scale = {"distribution": "logUniform"}
    assert {p["name"]: p["feasibleSpace"] for p in spec["parameters"]} == {
        name: {"list": [str(v) for v in space[key]]}
        if kind == "categorical"
        else {"min": str(space[key][0]), "max": str(space[key][1])}
        | (log_scale if key in SearchSpace.LOG_SCALE else {})
        for key, (name, kind) in katib.trial_parameters().items()
    }
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert "earlyStopping" not in spec  # every trial runs to its end, as `klinecast tune`'s
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "sharpe_after_fees"}
    command = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ][-1]
    for key, (name, _) in katib.trial_parameters().items():
        assert f"--{key.replace('_', '-')}=${{trialParameters.{name}}}" in command


def test_tune_trial_prints_the_metric_per_fold_for_the_stdout_collector(tmp_path, capsys):
    features = small_features(tmp_path / "features.parquet")
    params_path = write_cli_params(tmp_path, "sqlite://", n_trials=1)
    argv = [
        "tune-trial",
        "--params",
        str(params_path),
        "--features",
        str(features),
        "--n-estimators",
        "20",
        "--max-depth",
        "3",
        "--learning-rate",
        "0.1",
        "--subsample",
        "0.8",
        "--colsample-bytree",
        "0.8",
        "--gamma",
        "0",
        "--look-back-days",
        "10",
        "--horizon-hours",
        "3",
        "--side",
        "long_short",
        "--entry-band",
        "0.01",
        "--exit-band",
        "0.02",  # above the entry band: capped at it, as tune does
        "--min-hold-hours",
        "2",
        "--train-window",
        "sliding",
        "--cadence-hours",
        "4",
        "--n-features",
        "0",
        "--parallel-trees",
        "1",
        "--sample-weights",
        "equal",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert all(line.startswith("sharpe_after_fees=") for line in lines)
    rows = pd.read_parquet(features)
    params = small_params()
    longest = params.tune.search_space.look_back_days[1]  # every trial scores the same hours
    result = walk_forward_with_params(
        tuning.in_sample_rows(rows, params),
        params,
        Candidate(
            HyperParams(20, 3, 0.1, 0.8, 0.8, 0, 10),
            StrategyRule("long_short", 0.01, 0.01, 2, cadence_hours=4),
            3,
        ),
        test_start=rows.index[0].floor("D") + pd.Timedelta(days=longest),  # as tune-trial does
        test_end=pd.Timestamp("2021-04-01", tz="UTC"),
    )
    assert len(lines) == result.folds + 1  # one per fold, then the result
    assert float(lines[-1].split("=")[1]) == pytest.approx(result.model.sharpe, rel=1e-9)


def test_each_symbol_gets_an_experiment_of_its_own(validator):
    params = dataclasses.replace(
        Params(), data=dataclasses.replace(Params().data, symbols=("BTCUSDT", "ETHUSDT"))
    )
    documents = katib.experiments(params, image="img:1")
    assert [d["metadata"]["name"] for d in documents] == [
        "klinecast-btcusdt-tune", "klinecast-ethusdt-tune",
    ]  # fmt: skip
    for document, symbol in zip(documents, ("BTCUSDT", "ETHUSDT"), strict=True):
        assert list(validator.iter_errors(document)) == []
        (container,) = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
        command = container["command"][-1]
        assert command.startswith(
            f"dvc pull data/{symbol}/features.parquet && klinecast tune-trial --symbol {symbol} "
            f"--features data/{symbol}/features.parquet "
        )


def test_tune_trial_refuses_a_pooled_model(tmp_path, capsys):
    params = write_params(
        tmp_path / "params.yaml",
        {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}, "tune": {"pooling": "pooled"}},
    )
    argv = ["tune-trial", "--params", str(params), "--symbol", "ETHUSDT", "--features", "x.parquet"]
    levers = {"n-estimators": 20, "max-depth": 3, "learning-rate": 0.1, "subsample": 0.8,
              "colsample-bytree": 0.8, "gamma": 0, "look-back-days": 10, "horizon-hours": 3,
              "side": "long_only", "entry-band": 0.01, "exit-band": 0.0, "min-hold-hours": 2,
              "train-window": "sliding", "cadence-hours": 4, "n-features": 0,
              "parallel-trees": 1, "sample-weights": "equal"}  # fmt: skip
    argv += [part for name, value in levers.items() for part in (f"--{name}", str(value))]
    assert main(argv) == 1
    assert (
        "tune-trial scores one symbol's own model; tune.pooling: pooled is tuned on every "
        "symbol's rows by `klinecast tune` (dvc repro), not by Katib"
    ) in capsys.readouterr().err
