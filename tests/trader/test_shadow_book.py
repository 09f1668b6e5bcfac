"""The shadow book end to end with the real servers: the champion (the session's served model)
and a retrained challenger, published beside it in a registry and served by the challenger's
own InferenceService, which follows the registry's CHALLENGER pointer. A replay through both
trades the champion's calls only, books the challenger's on paper, and the shadow book equals an
offline backtest of the challenger over the same hours; `klinecast challenger decide` then
decides on the same figures computed offline, and records them in the registry."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from klinecast.book import challenger_service
from klinecast.cli import main
from klinecast.config import Params, PublishParams
from klinecast.release import registry
from klinecast.release.gate import Condition, Gate
from klinecast.release.promotion import publish_artifact
from klinecast.research import strategy
from klinecast.research.model import Candidate, HyperParams
from klinecast.serving.local import LocalServing
from tests.support.browser import inked_share, visit
from tests.support.helpers import NAME, free_port, offline_book, table, write_params
from tests.support.model_fixtures import MIRROR_PARAMS, trained_artifact

pytestmark = pytest.mark.integration
MODEL = "klinecast-btcusdt-1h"  # publish.model_name's pattern for BTCUSDT 1h
#: the retrained challenger's own rule: quicker to enter and to leave than the champion's
CHALLENGER_RULE = strategy.StrategyRule("long_short", entry_band=0.01, exit_band=0.0, min_hold_hours=1)
#: the rule over three days: a margin wide enough that their interval can decide
RULE = {"min_hours": 48, "max_daily_shortfall": 0.10}


@pytest.fixture(scope="module")
def challenger_artifact(mirror_candles, tmp_path_factory):
    """A model retrained on the same span with other trees and its own rule."""
    candidate = Candidate(HyperParams(30, 3, 0.2, 0.7, 0.9, 0, 45), CHALLENGER_RULE, horizon_hours=1)
    out = tmp_path_factory.mktemp("challenger") / "candidate"
    trained_artifact(mirror_candles, MIRROR_PARAMS, candidate, out)
    return out


@pytest.fixture(scope="module")
def published(artifact, challenger_artifact, tmp_path_factory):
    """A registry where the champion is production and the challenger, passing its gate
    after it, is in shadow (publish.challenger's defaults)."""
    uri = str(tmp_path_factory.mktemp("registry") / "models")
    passed = Gate((Condition("excess_return", True, "over every baseline"),))
    for candidate in (artifact, challenger_artifact):
        publish_artifact(candidate, PublishParams(registry=uri), model_name=MODEL, verdict=passed)
    return uri


@pytest.fixture(scope="module")
def challenger_serving(published, tmp_path_factory):
    storage = f"BTCUSDT={published}/{MODEL}/versions/{registry.CHALLENGER_VERSION}"
    with LocalServing(
        challenger_service(NAME), storage, free_port(), free_port(),
        log_dir=tmp_path_factory.mktemp("challenger-logs"),
    ) as local:  # fmt: skip
        yield local


def test_the_shadow_book_equals_the_challengers_backtest_and_the_rule_decides_on_it(
    serving, challenger_serving, published, artifact, challenger_artifact, mirror_candles,
    tmp_path, capsys,
):  # fmt: skip
    from klinecast.monitor.promotion_rule import decide
    from klinecast.trader.ledger import Ledger
    from klinecast.trader.shadow import compare

    history = mirror_candles.loc[:"2021-12-31 23:00"]
    candles_path = tmp_path / "candles.parquet"
    history.to_parquet(candles_path)
    ledger = f"sqlite:///{tmp_path}/replay.db"
    params = write_params(tmp_path / "params.yaml", {
        "publish": {"service_name": NAME, "registry": published, "challenger": RULE},
        "trade": {"inference_url": serving.transformer_url, "request": "candles",
                  "challenger_url": challenger_serving.transformer_url, "ledger": ledger},
    })  # fmt: skip
    argv = ["trade", "replay", "--params", str(params), "--candles", str(candles_path)]
    assert main([*argv, "--start", "2021-12-01", "--end", "2021-12-03", "--ledger", ledger]) == 0
    out = capsys.readouterr().out
    challenger_version = registry.challenger(registry.open_store(published), MODEL)["version"]
    assert "72 hours, 72 traded" in out
    assert f"shadow book of the challenger {challenger_version}" in out

    calls = pd.DataFrame(table(ledger, "shadow_calls")).set_index("hour").sort_index()
    hours = pd.DatetimeIndex(pd.to_datetime(calls.index, utc=True))
    assert len(hours) == 72 and (calls["status"] == "called").all()
    assert (calls["version"] == challenger_version).all()
    proba, position, returns = offline_book(history, challenger_artifact, hours)
    np.testing.assert_allclose(calls["prob_up"].to_numpy(), proba, atol=1e-6)
    assert (calls["target"].to_numpy() == position).all()
    assert np.count_nonzero(np.diff(position)) > 3  # the challenger's rule trades in shadow
    shadow = pd.DataFrame(table(ledger, "shadow_outcomes")).sort_values("hour")
    np.testing.assert_allclose(shadow["equity"].to_numpy(), np.cumprod(1.0 + returns), rtol=1e-12)

    # the champion traded its own calls, never the challenger's
    predictions = pd.DataFrame(table(ledger, "predictions")).set_index("hour").sort_index()
    _, champion_position, champion_returns = offline_book(history, artifact, hours)
    assert (predictions["target"].to_numpy() == champion_position).all()
    assert (champion_position != position).any()
    orders = table(ledger, "orders")
    assert len(orders) == np.count_nonzero(np.diff(champion_position, prepend=0)) + sum(
        1 for a, b in zip(np.r_[0, champion_position[:-1]], champion_position, strict=True) if a * b < 0
    )

    # the rule, over the hours both books settled, against the same figures from the backtests
    side = compare(Ledger(ledger), "BTCUSDT")
    offline = pd.DataFrame({"champion": champion_returns, "challenger": returns}, index=hours)
    assert len(side.hours) == len(shadow) == 72  # the last hour too: its next candle closed
    days = (1.0 + offline).groupby(offline.index.floor("D")).prod() - 1.0
    expected = (days["challenger"] - days["champion"]).to_numpy()
    np.testing.assert_allclose(side.daily_difference.to_numpy(), expected, rtol=1e-9, atol=1e-15)
    total = np.prod(1.0 + offline["challenger"].to_numpy()) - 1.0
    assert side.challenger.total_return == pytest.approx(total, rel=1e-9)
    decision = decide(side, dataclasses.replace(Params().publish.challenger, **RULE))
    from scipy import stats

    reach = stats.t.ppf(0.9, len(expected) - 1) * expected.std(ddof=1) / np.sqrt(len(expected))
    lower, upper = expected.mean() - reach, expected.mean() + reach
    assert decision.evidence["lower"] == pytest.approx(lower, rel=1e-9)
    assert decision.evidence["upper"] == pytest.approx(upper, rel=1e-9)
    margin = -RULE["max_daily_shortfall"]
    expected_action = "promote" if lower >= margin else "reject" if upper < margin else "shadow"
    assert decision.action == expected_action == "promote"  # these three days: wide, not worse

    # the command decides the same, and the registry holds the decision and its evidence
    assert main(["challenger", "status", "--params", str(params)]) == 0
    status = capsys.readouterr().out
    assert f"the rule says {expected_action}" in status and "challenger " in status
    assert main(["challenger", "decide", "--params", str(params), "--by", "rule"]) == 0
    assert f"{challenger_version}: {expected_action}" in capsys.readouterr().out
    store = registry.open_store(published)
    recorded = registry.decisions(store, MODEL)[-1]
    assert (recorded["action"], recorded["by"]) == ("promote", "rule")
    assert recorded["version"] == challenger_version
    evidence = json.loads(json.dumps(decision.evidence)) | {"span_looks": 1}
    assert recorded["evidence"] == evidence
    assert registry.challenger(store, MODEL) is None

    # the monitor shows both books side by side, the rule's verdict and the registry's decision
    out_dir = tmp_path / "monitor"
    assert main(["monitor", "--params", str(params), "--out-dir", str(out_dir),
                 "--features", str(tmp_path / "none.parquet")]) == 0  # fmt: skip
    line = capsys.readouterr().out
    assert f"shadow: {challenger_version} over 72 hours" in line
    report = json.loads((out_dir / "BTCUSDT" / "monitor.json").read_text())
    assert report["shadow"]["recorded"] == recorded
    assert report["shadow"]["evidence"]["lower"] == pytest.approx(lower, rel=1e-9)
    prom = (out_dir / "BTCUSDT" / "metrics.prom").read_text()
    assert f'klinecast_shadow_hours{{symbol="BTCUSDT"}} {72:.1f}' in prom
    assert 'klinecast_book_return{book="challenger",symbol="BTCUSDT"}' in prom
    seen = visit(out_dir / "BTCUSDT" / "monitor.html", screenshot=tmp_path / "monitor.png",
                 count=("#shadow tr", "img"), read=("#decision", "#rule"))  # fmt: skip
    assert seen.outside_requests == [] and seen.errors == [] and seen.broken_images == 0
    assert seen.counts["#shadow tr"] == 3 and seen.counts["img"] >= 2  # the table, the plots
    assert seen.texts["#decision"].startswith(f"The registry's last decision: promote {challenger_version} by rule")
    assert "The promotion rule says" in seen.texts["#rule"]
    assert inked_share(tmp_path / "monitor.png") > 0.01
