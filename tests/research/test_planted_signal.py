"""The planted-signal test: where a known feature carries a known edge, the default search,
unchanged, must find it, and the gate must let the model through.

The candles (`planted_candles`) plant a daily signal in the 24-hour taker-buy share, one of
the default features: the next UTC day's return has mean STRENGTH x z, where z is the day's
standardised share, under hourly noise of 0.6 % (BTC-like). That is a correlation of about
0.24 between the feature at 00:00 and the next day's return; the one-line rule that reads it
(long when the share is above one half, decided at 00:00 UTC, flat otherwise) trades it at an
annual Sharpe ratio of 1.90 after costs over the three test years, well under 3. Nothing else
in the series carries information, and each span's noise is driftless, so neither holding nor a
trend rule has an edge.

The pipeline runs as committed: params.yaml's features, search space, objective, 40 trials,
2 workers, costs, baselines and gate; only the split moves onto the synthetic years: four in
sample (as long as the mirror's 2018-2021), three out of sample, after the 200 days the longest
feature needs.

Why so many years. A long-only rule is flat much of the time, and against buy-and-hold its flat
hours add the market's whole variance to the difference the bootstrap tests, so a Sharpe of 2
needs years to be told from holding. And the model learns a weak daily signal slowly: it has
one independent example a day. With three years in sample the search chose the right shape
(a daily cadence, a one-day label, the anchored window) and made a Sharpe of 1.40 after costs
out of sample (0.15, 1.01 and 3.53 in its three years, as its window grew), but the largest
p-value, against buy-and-hold, was 0.114 and the gate refused. With four years in sample, as
here: a Sharpe of 1.63 (the oracle's 1.90), and the largest p-value 0.020.
"""

import json

import pytest

from klinecast.cli import main
from tests.support.planted import oracle_sharpe, planted_project

STRENGTH = 0.007


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("planted")
    return workdir, planted_project(workdir, strength=STRENGTH, seed=0)


def run(workdir, *argv):
    return main([*argv, "--params", str(workdir / "params.yaml")])


def test_the_default_search_finds_a_planted_edge_and_the_gate_passes(planted, monkeypatch, capsys):
    workdir, frame = planted
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("KLINECAST_OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("KLINECAST_REGISTRY", raising=False)
    oracle = oracle_sharpe(frame)
    assert 1.5 < oracle < 3  # an edge an oracle trades well under a Sharpe of 3

    for stage in ("tune", "evaluate", "train", "publish"):
        assert run(workdir, stage, *(["--no-progress"] if stage == "tune" else [])) == 0, stage
    print(capsys.readouterr().out)
    metrics = json.loads((workdir / "reports/symbols/BTCUSDT/metrics.json").read_text())
    receipt = json.loads((workdir / "reports/symbols/BTCUSDT/publish.json").read_text())
    model, significance = metrics["model"], metrics["significance"]
    print(json.dumps({"oracle": oracle, "model": model, "significance": significance}, indent=1))

    assert receipt["gate"]["passed"] and receipt["promoted"], receipt["gate"]
    assert significance["max_p_value"] <= 0.05
    assert model["sharpe"] > 1.0  # much of the oracle's edge, after costs
    assert all(excess > 0 for excess in metrics["excess_return"].values())
    # every trial ran to its end, and the model ranks the hours better than chance
    assert significance["trials_run"] == 40
    assert model["roc_auc"] > 0.52
