"""The null test: on a random walk there is no edge by construction, and the pipeline must say so.

The candles are a geometric random walk (independent normal hourly returns, with independent
volumes and taker-buy shares), so no feature can predict the next hours; the in-sample year's
and the out-of-sample quarter's returns are each centred, so neither trends and holding is worth
nothing either. The whole modeling chain runs on it through the CLI with the default features,
strategy levers, objective, costs, baselines and gate (only the trees are kept small, the
look-backs short and the trials few, for time), with two seeded tuning workers. It must:

- refuse to publish (the gate);
- report a largest p-value of the declared baselines that is not significant;
- lose little after costs, because the search may choose a rule that (nearly) never trades.

The bound is a loss under 5 % over the quarter (2,160 hours). On a driftless quarter a rule's
expected return before fees is 0, so what it loses on average is its fees: 5 % is 50 position
changes at 0.1 % each (25 round trips), and the test also asserts at most that many changes and
that much in fees. Around that 0 lies noise of about 0.6 % x sqrt(hours in the market), +-5 %
after some 70 hours, so a rule that sat in the market for long could pass or fail by luck; a
search that can stay flat needs none. The seed's rule (a position every hour, flipped about
every other hour) would pay 0.1 % on some 1,000 hours: near two thirds of its capital.
"""

import json

import pandas as pd
import pytest
import yaml

from klinecast.cli import main
from klinecast.research.features import compute_features
from tests.support.candle_factory import synthetic_candles
from tests.support.paths import REPO

#: 200 days of history for the longest feature, 2021 in sample, 2022-01..03 out of sample, and
#: the rest of 2022
START, IN_SAMPLE, OUT_OF_SAMPLE, REST, END = (
    "2020-06-01",
    "2021-01-01",
    "2022-01-01",
    "2022-04-01",
    "2022-05-01",
)


def hours_from_start(day: str) -> int:
    return 24 * (pd.Timestamp(day) - pd.Timestamp(START)).days


@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("null")
    # BTC-like hourly volatility; neither the in-sample year nor the quarter after it trends,
    # so being long is worth nothing either
    candles = synthetic_candles(
        hours_from_start(END), start=START, seed=11, volatility=0.006,
        driftless=tuple(hours_from_start(day) for day in (IN_SAMPLE, OUT_OF_SAMPLE, REST)),
    )  # fmt: skip
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    frame = compute_features(
        candles, indicators=raw["features"]["indicators"], interval=candles.index.freq
    ).frame
    (workdir / "data").mkdir()
    frame.to_parquet(workdir / "data/features.parquet")
    raw["split"] = {
        "in_sample_start": "2021-01-01",
        "in_sample_end": "2021-12-31",
        "out_of_sample_start": "2022-01-01",
        "out_of_sample_end": "2022-03-31",
    }
    space = raw["tune"]["search_space"]
    space.update(n_estimators=[20, 60], max_depth=[2, 4], look_back_days=[30, 90])
    raw["tune"].update(n_trials=16, storage=f"sqlite:///{workdir}/optuna.db")
    raw["publish"]["registry"] = str(workdir / "registry")
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return workdir, frame


def run(workdir, *argv):
    return main([*argv, "--params", str(workdir / "params.yaml")])


def test_on_a_random_walk_the_gate_refuses_and_little_is_lost(null_run, monkeypatch, capsys):
    workdir, frame = null_run
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("KLINECAST_OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("KLINECAST_REGISTRY", raising=False)
    assert run(workdir, "tune", "--no-progress") == 0  # 2 workers, seeded batches
    assert run(workdir, "evaluate") == 0
    assert run(workdir, "train") == 0
    assert run(workdir, "publish") == 0
    out = capsys.readouterr().out
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    receipt = json.loads((workdir / "reports/publish.json").read_text())

    assert not receipt["promoted"] and not receipt["gate"]["passed"]
    assert "NOT promoted (gate failed)" in out
    assert metrics["significance"]["max_p_value"] > 0.05
    model = metrics["model"]
    assert model["cumulative_return"] > -0.05, model
    assert metrics["significance"]["deflated_sharpe"] < 0.95

    # it got there by trading rarely: at most about 25 round trips in 2,160 hours
    assert model["trades"] <= 50 and model["fees_paid"] <= 0.05
    assert metrics["span"]["hours"] == 2160
