"""tune -> evaluate -> train -> publish -> report through the CLI, on small synthetic data."""

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml

from klinecast.cli import main
from klinecast.errors import KlinecastError
from klinecast.research import evaluation, training
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.strategy import SEED_RULE
from tests.support.helpers import write_cli_params
from tests.support.model_fixtures import small_features, small_params

HP = HyperParams(20, 3, 0.1, 0.8, 0.8, 0, 10)
CANDIDATE = Candidate(HP, SEED_RULE, 1)


def write_best_params(workdir, candidate=CANDIDATE):
    (workdir / "reports/symbols/BTCUSDT/tune").mkdir(parents=True)
    document = {
        "params": candidate.as_dict(),
        "search": {"trials_run": 1, "sharpe_variance": 0.0, "trials_that_trade": 1},
        "in_sample": {},
    }
    (workdir / "reports/symbols/BTCUSDT/tune/best_params.json").write_text(json.dumps(document))


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KLINECAST_OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("KLINECAST_REGISTRY", raising=False)
    (tmp_path / "data/BTCUSDT").mkdir(parents=True)
    small_features(tmp_path / "data/BTCUSDT/features.parquet")
    write_cli_params(tmp_path, "sqlite:///optuna.db", n_trials=4)
    return tmp_path


def set_gate(workdir, excess: float, **publish) -> None:
    path = workdir / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["publish"]["gate_min_excess_return"] = excess
    raw["publish"].update(publish)
    path.write_text(yaml.safe_dump(raw))


OPEN = {"gate_max_p_value": 1.0, "min_splits": 0, "min_features_used": 0, "min_trades": 0}


def test_the_whole_modeling_chain(workdir, capsys):
    assert main(["tune", "--no-progress"]) == 0
    best = json.loads((workdir / "reports/symbols/BTCUSDT/tune/best_params.json").read_text())
    assert best["trials"]["complete"] >= 1
    assert main(["evaluate"]) == 0
    metrics = json.loads((workdir / "reports/symbols/BTCUSDT/metrics.json").read_text())
    naive = {"buy_and_hold", "always_short", "momentum", "coin_flip", "vol_target"}
    trends = {f"trend_{n}d" for n in (20, 50, 100, 200)}
    assert set(metrics["baselines"]) == naive | trends
    assert metrics["span"]["first_hour"] == "2021-04-01T00:00:00+00:00"
    for name in ("model", *metrics["baselines"]):
        m = metrics["model"] if name == "model" else metrics["baselines"][name]
        assert {"cumulative_return", "sharpe", "max_drawdown", "trades", "exposure"} <= set(m)
    predictions = pd.read_parquet(workdir / "reports/symbols/BTCUSDT/predictions.parquet")
    assert predictions.index.min() >= pd.Timestamp("2021-04-01", tz="UTC")
    assert (workdir / "reports/symbols/BTCUSDT/equity.csv").read_text().startswith("day,model,")

    significance = metrics["significance"]
    assert 0 <= significance["max_p_value"] <= 1 and 0 <= significance["deflated_sharpe"] <= 1
    assert significance["deflated_sharpe"] == best["search"]["deflated_sharpe"]  # in sample
    assert significance["trials_run"] == best["search"]["trials_run"]
    side = Candidate.from_dict(best["params"]).rule.side
    declared = significance["declared"]
    assert set(declared) == {"buy_and_hold", "vol_target", *trends} | (
        {"always_short"} if side == "long_short" else set()
    )
    assert significance["max_p_value"] == max(t["p_value"] for t in declared.values())
    assert significance["bootstrap_reps"] == 5000 and significance["span_looks"] == 1
    assert all(t["mc_error"] < 0.008 for t in declared.values())
    years = {(y["year"], y["strategy"]) for y in metrics["per_year"]}
    assert years == {(2021, name) for name in ("model", *metrics["baselines"])}
    assert len(metrics["per_fold"]) == metrics["span"]["folds"]
    assert metrics["per_month"][0]["month"] == "2021-04"
    # per fold and per month: the model and every baseline, compounding to the whole span's
    for name, m in metrics["baselines"].items():
        assert np.prod([1 + f["baselines"][name] for f in metrics["per_fold"]]) - 1 == (
            pytest.approx(m["cumulative_return"])
        )
        assert np.prod([1 + month[name] for month in metrics["per_month"]]) - 1 == (
            pytest.approx(m["cumulative_return"])
        )
    months = np.prod([1 + month["model"] for month in metrics["per_month"]]) - 1
    assert months == pytest.approx(metrics["model"]["cumulative_return"])
    assert metrics["in_sample"]["sharpe"] == pytest.approx(best["value"])  # sharpe_after_fees

    assert main(["train"]) == 0
    metadata = json.loads((workdir / "models/BTCUSDT/candidate/metadata.json").read_text())
    assert metadata["feature_names"][:2] == ["ma_ratio_5", "ma_ratio_10"]
    candidate = Candidate.from_dict(best["params"])
    assert metadata["hyperparams"] == candidate.hp.as_dict()
    assert metadata["strategy"] == candidate.rule.as_dict()
    assert metadata["horizon_hours"] == candidate.horizon_hours
    assert metadata["complexity"]["trees"] == candidate.hp.n_estimators
    assert metadata["metrics"] == metrics
    assert metadata["data_version"]["features_sha256"]
    assert metadata["libraries"]["xgboost-cpu"] and metadata["created_at"]
    assert pd.Timestamp(metadata["train_end"]) < pd.Timestamp("2021-05-01", tz="UTC")

    set_gate(workdir, -100.0, **OPEN)  # any model passes
    assert main(["publish"]) == 0
    receipt = json.loads((workdir / "reports/symbols/BTCUSDT/publish.json").read_text())
    assert receipt["promoted"] and receipt["gate"]["passed"]
    promoted = receipt["version"]
    names = [c["name"] for c in receipt["gate"]["conditions"]]
    assert names == ["excess_return", "p_value", "not_degenerate", "book_multiplicity"]

    set_gate(workdir, 100.0, **OPEN)  # no model passes
    assert main(["train"]) == 0  # a new artifact, so a new version
    assert main(["publish"]) == 0
    receipt = json.loads((workdir / "reports/symbols/BTCUSDT/publish.json").read_text())
    assert not receipt["promoted"] and receipt["version"] != promoted
    assert receipt["production"]["version"] == promoted  # the pointer did not move
    assert "NOT promoted (gate failed)" in capsys.readouterr().out

    assert main(["report"]) == 0
    page = (workdir / "reports/symbols/BTCUSDT/report.html").read_text()
    # equity + position + drawdown, monthly heatmap, calibration, tuning, importance
    assert page.count("data:image/png;base64,") == 5
    assert "trend_200d" in page and "NOT promoted" in page and "<script" not in page
    assert f"p-values is <b>{significance['max_p_value']:.3f}</b>" in page
    assert f"deflated Sharpe ratio is <b>{significance['deflated_sharpe']:.2f}</b>" in page
    assert "This out-of-sample span has been looked at 1 time(s)" in page
    assert "excess return short of" in page  # each gate condition, and whether it held
    for heading in ("The gate's baselines", "Before and after costs", "From before costs to after",
                    "Year by year", "Monthly returns", "Calibration", "Walk-forward folds",
                    "In sample against out of sample"):  # fmt: skip
        assert f"<h2>{heading}" in page


def test_evaluate_without_out_of_sample_data_says_what_to_change(workdir, capsys):
    path = workdir / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["split"].update(out_of_sample_start="2022-01-01", out_of_sample_end="2022-05-31")
    path.write_text(yaml.safe_dump(raw))
    write_best_params(workdir)
    assert main(["evaluate"]) == 1
    err = capsys.readouterr().err
    assert "the out-of-sample span 2022-01-01 .. 2022-05-31 has no feature rows" in err
    assert "the data covers 2021-01-02 .. 2021-04-30" in err
    assert "Set split.out_of_sample_start/end inside the data" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate"], "reports/symbols/BTCUSDT/tune/best_params.json does not exist; run `klinecast tune --symbol BTCUSDT`"),
        (["train"], "reports/symbols/BTCUSDT/tune/best_params.json does not exist"),
        (["publish"], "models/BTCUSDT/candidate is not a model artifact: model.json is missing"),
        (["report"], "models/BTCUSDT/candidate is not a model artifact"),
    ],
)
def test_stages_need_their_inputs(workdir, capsys, argv, message):
    (workdir / "models/BTCUSDT/candidate").mkdir(parents=True)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_malformed_best_params_is_reported(workdir, capsys):
    (workdir / "reports/symbols/BTCUSDT/tune").mkdir(parents=True)
    (workdir / "reports/symbols/BTCUSDT/tune/best_params.json").write_text('{"params": {"max_depth": 3}}')
    assert main(["evaluate"]) == 1
    assert "is not a best_params.json written by tune" in capsys.readouterr().err


def test_final_model_trains_on_the_last_look_back_days(workdir):
    frame = pd.read_parquet(workdir / "data/BTCUSDT/features.parquet")
    trained = training.train_final(frame, small_params(), CANDIDATE)
    assert trained.train_end == pd.Timestamp("2021-04-30 22:00", tz="UTC")  # last labelled row
    assert trained.train_end - trained.train_start == pd.Timedelta(days=10) - pd.Timedelta(hours=1)
    assert trained.booster.num_boosted_rounds() == HP.n_estimators
    assert isinstance(trained.booster, xgb.Booster)


def test_final_model_with_too_long_look_back_is_a_clear_error(workdir):
    frame = pd.read_parquet(workdir / "data/BTCUSDT/features.parquet")
    with pytest.raises(KlinecastError, match="look_back_days=400 reaches back to"):
        training.train_final(
            frame, small_params(), Candidate(dataclasses.replace(HP, look_back_days=400), SEED_RULE)
        )


def test_evaluation_never_trains_on_out_of_sample_rows(workdir):
    frame = pd.read_parquet(workdir / "data/BTCUSDT/features.parquet")
    params = small_params()
    clean = evaluation.out_of_sample(frame, params, CANDIDATE)
    poisoned = frame.copy()
    inside = poisoned.index >= pd.Timestamp(dt.date(2021, 4, 1), tz="UTC")
    # flipping a label inside the span may only change folds that train after that label
    poisoned.loc[inside, "label"] = 1.0 - poisoned.loc[inside, "label"]
    first_fold = clean.predictions.index < pd.Timestamp("2021-04-06", tz="UTC")
    again = evaluation.out_of_sample(poisoned, params, CANDIDATE)
    pd.testing.assert_series_equal(
        again.predictions["prob_up"][first_fold], clean.predictions["prob_up"][first_fold]
    )


def test_a_study_where_no_trial_trades_says_so_and_is_not_an_error(workdir, capsys):
    path = workdir / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    # nothing is ever that sure: long beyond 0.99 only
    raw["tune"]["search_space"].update(entry_band=[0.49, 0.49], side=["long_only"])
    path.write_text(yaml.safe_dump(raw))
    for stage in ("tune", "evaluate", "train", "publish", "report"):
        assert main([stage] + (["--no-progress"] if stage == "tune" else [])) == 0, stage
    out = capsys.readouterr().out
    assert "4 complete trial(s) (0 failed), 0 traded" in out
    receipt = json.loads((workdir / "reports/symbols/BTCUSDT/publish.json").read_text())
    degenerate = next(c for c in receipt["gate"]["conditions"] if c["name"] == "not_degenerate")
    assert not degenerate["held"] and not receipt["promoted"]
    assert "no tuning trial traded in sample either" in degenerate["detail"]
    page = (workdir / "reports/symbols/BTCUSDT/report.html").read_text()
    assert "No tuning trial traded in sample" in page and "This is a finding, not an error" in page


def test_a_linear_search_runs_the_whole_chain_and_says_it_is_linear(workdir):
    """booster: [gblinear] through tune, evaluate, train, publish and report: the artifact is a
    linear model, the gate judges its weights (not its splits) and the report says so."""
    path = workdir / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["tune"]["search_space"].update(booster=["gblinear"], reg_alpha=[0.0, 0.01])
    path.write_text(yaml.safe_dump(raw))
    for stage in ("tune", "evaluate", "train"):
        assert main([stage] + (["--no-progress"] if stage == "tune" else [])) == 0, stage
    best = json.loads((workdir / "reports/symbols/BTCUSDT/tune/best_params.json").read_text())
    assert best["params"]["booster"] == "gblinear" and 0 <= best["params"]["reg_alpha"] <= 0.01
    metadata = json.loads((workdir / "models/BTCUSDT/candidate/metadata.json").read_text())
    shape = metadata["complexity"]
    assert shape["booster"] == "gblinear" and shape["trees"] == shape["splits"] == 0
    booster = xgb.Booster(model_file=str(workdir / "models/BTCUSDT/candidate/model.json"))
    weights = booster.get_score(importance_type="weight")
    assert sorted(n for n, w in weights.items() if w != 0) == shape["features_used"]
    set_gate(workdir, -100.0, gate_max_p_value=1.0, min_trades=0)  # min_splits stays 50
    assert main(["publish"]) == 0
    receipt = json.loads((workdir / "reports/symbols/BTCUSDT/publish.json").read_text())
    degenerate = next(c for c in receipt["gate"]["conditions"] if c["name"] == "not_degenerate")
    assert shape["features_used"] and degenerate["held"]
    assert f"a linear model with a weight on {len(shape['features_used'])} feature(s)" in (
        degenerate["detail"]
    )
    assert main(["report"]) == 0
    page = (workdir / "reports/symbols/BTCUSDT/report.html").read_text()
    assert "Feature importance (the size of each weight on standardised features)" in page
    assert "rounds of coordinate descent on standardised features" in page
