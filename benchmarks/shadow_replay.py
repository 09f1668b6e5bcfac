"""A model's life on the five-symbol example, replayed: issue 34's end-to-end check.

For each of the example's five symbols (examples/five-symbols.yaml: its features), on the
shared mirror's candles before the replayed span: a champion is trained, published and
promoted, then a challenger retrained with other trees and its own rule passes its gate after
it and goes into shadow (publish.challenger). Both books are served for real: the book's
InferenceService follows each symbol's PRODUCTION pointer, the challengers' follows each
CHALLENGER pointer. `klinecast trade replay` then runs the hourly cycle over a fortnight
(--start .. --end) through both; each symbol's shadow book (and traded book) is compared with
an offline backtest of its challenger (and champion) over the same hours, and
`klinecast challenger decide` applies the promotion rule, whose evidence is checked against
the same figures computed offline.

JSON in benchmarks/results/shadow_replay.json, and a Markdown table.

Usage: python benchmarks/shadow_replay.py [--start 2021-12-01 --end 2021-12-14]
(`make check-shadow`; about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, from the repo

from klinecast.book import Book, challenger_service  # noqa: E402
from klinecast.cli import main  # noqa: E402
from klinecast.config import load_params  # noqa: E402
from klinecast.monitor.promotion_rule import decide  # noqa: E402
from klinecast.release import registry  # noqa: E402
from klinecast.research.model import Candidate, HyperParams  # noqa: E402
from klinecast.research.strategy import StrategyRule  # noqa: E402
from klinecast.serving import feature_sync  # noqa: E402
from klinecast.serving.local import LocalServing  # noqa: E402
from klinecast.trader.ledger import Ledger  # noqa: E402
from klinecast.trader.shadow import compare  # noqa: E402
from tests.support.helpers import free_port, offline_book, table  # noqa: E402
from tests.support.model_fixtures import trained_artifact  # noqa: E402
from tests.support.paths import MIRROR, REPO  # noqa: E402

EXAMPLE = REPO / "examples" / "five-symbols.yaml"
RESULTS = REPO / "benchmarks" / "results"
#: champion and challenger: other trees, other rules (the challenger quicker in and out)
MODELS = {
    "champion": Candidate(
        HyperParams(60, 4, 0.1, 0.8, 0.8, 0, 120),
        StrategyRule("long_short", entry_band=0.02, exit_band=0.005, min_hold_hours=3),
        horizon_hours=2,
    ),
    "challenger": Candidate(
        HyperParams(30, 3, 0.2, 0.7, 0.9, 0, 90),
        StrategyRule("long_short", entry_band=0.01, exit_band=0.0, min_hold_hours=1),
        horizon_hours=1,
    ),
}


def candles_of(symbols, root: Path, end: dt.date) -> dict[str, pd.DataFrame]:
    # a day in the month after: the mirror holds monthly archives only
    today = (pd.Timestamp(end) + pd.offsets.MonthBegin(1) + pd.Timedelta(days=1)).date()
    source = feature_sync.archive_source(str(MIRROR), root / "archives", today=today)
    return {
        symbol: source(symbol, "1h", pd.Timestamp("2021-01-01", tz="UTC"),
                       pd.Timestamp(end, tz="UTC") + pd.Timedelta(hours=47))
        for symbol in symbols
    }  # fmt: skip


def main_(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start", default="2021-12-01", type=dt.date.fromisoformat)
    parser.add_argument("--end", default="2021-12-14", type=dt.date.fromisoformat)
    args = parser.parse_args(argv)
    params = load_params(EXAMPLE)
    book = Book(params)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shadow-replay-") as tmp:
        root = Path(tmp)
        candles = candles_of(book.symbols, root, args.end)
        store = registry.LocalStore(root / "registry")
        artifacts: dict[str, dict[str, Path]] = {}
        for symbol in book.symbols:
            (root / "data" / symbol).mkdir(parents=True)
            candles[symbol].to_parquet(root / "data" / symbol / "candles.parquet")
            before = candles[symbol].loc[: pd.Timestamp(args.start, tz="UTC") - pd.Timedelta(hours=1)]
            artifacts[symbol] = {  # on the hours before the replay only
                role: trained_artifact(before, book.for_symbol(symbol), candidate, root / role / symbol)
                for role, candidate in MODELS.items()
            }
            name = book.model_name(symbol)
            registry.publish(artifacts[symbol]["champion"], store=store, model_name=name, promote=True)
            registry.publish(artifacts[symbol]["challenger"], store=store, model_name=name,
                             promote=False, challenge="passed its gate; shadows production")  # fmt: skip
        print(f"shadow replay: trained and published 2 x {len(book.symbols)} models "
              f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip

        def storage(version: str) -> str:
            return book.storage_string(
                lambda s: f"{store.uri(book.model_name(s))}/versions/{version}"
            )

        ledger = f"sqlite:///{root}/ledger.db"
        config = root / "params.yaml"
        raw = json.loads(json.dumps(_raw(EXAMPLE)))
        raw["publish"].update({"registry": str(root / "registry"), "service_name": "klinecast",
                               "challenger": {**raw["publish"].get("challenger", {}), "min_hours": 168}})  # fmt: skip
        with (
            LocalServing("klinecast", storage("PRODUCTION"), free_port(), free_port(), log_dir=root / "logs") as champion,
            LocalServing(challenger_service("klinecast"), storage("CHALLENGER"), free_port(), free_port(),
                         log_dir=root / "logs-challenger") as shadow,
        ):  # fmt: skip
            # the kill switches out of reach: the offline backtests never halt (tests/trader test them)
            raw["trade"].update({"inference_url": champion.transformer_url, "request": "candles",
                                 "challenger_url": shadow.transformer_url, "ledger": ledger,
                                 "kill_switch_return": -0.999, "book_kill_switch_return": -0.999})  # fmt: skip
            import yaml

            config.write_text(yaml.safe_dump(raw, sort_keys=False))
            replayed = time.perf_counter()
            cwd = Path.cwd()
            os.chdir(root)  # each symbol's candles from data/<symbol>/candles.parquet
            try:
                argv = ["trade", "replay", "--params", str(config), "--ledger", ledger,
                        "--start", str(args.start), "--end", str(args.end)]  # fmt: skip
                assert main(argv) == 0, "the replay failed"
            finally:
                os.chdir(cwd)
            replay_s = time.perf_counter() - replayed
        rows = [check(symbol, candles[symbol], artifacts[symbol], ledger, load_params(config))
                for symbol in book.symbols]  # fmt: skip
        argv = ["challenger", "decide", "--params", str(config), "--ledger", ledger, "--by", "rule"]
        assert main(argv) == 0
        for row in rows:
            name = book.model_name(row["symbol"])
            last = registry.decisions(store, name)[-1]
            row["recorded"] = last["action"]
            row["recorded_evidence_equal"] = last["action"] == "challenge" or (
                last["evidence"]["lower"] == row["rule_lower"] and last["evidence"]["upper"] == row["rule_upper"]
            )
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "span": f"{args.start} .. {args.end}",
        "replay_seconds": round(replay_s, 1),
        "symbols": rows,
        "all_equal": all(r["shadow_max_rel_diff"] <= 1e-12 and r["champion_max_rel_diff"] <= 1e-12
                         and r["evidence_equal"] and r["recorded_evidence_equal"] for r in rows),
    }  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shadow_replay.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0 if result["all_equal"] else 1


def _raw(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def check(symbol: str, candles: pd.DataFrame, artifacts: dict, ledger_url: str, params) -> dict:
    """The symbol's shadow and traded books against their offline backtests, and the rule's
    evidence against the same figures computed offline."""
    calls = pd.DataFrame([r for r in table(ledger_url, "shadow_calls") if r["symbol"] == symbol])
    calls = calls.sort_values("hour")
    hours = pd.DatetimeIndex(pd.to_datetime(calls["hour"], utc=True))
    shadow = pd.DataFrame([r for r in table(ledger_url, "shadow_outcomes") if r["symbol"] == symbol])
    equity = pd.DataFrame([r for r in table(ledger_url, "equity") if r["symbol"] == symbol])
    _, position, returns = offline_book(candles, artifacts["challenger"], hours)
    _, champion_position, champion_returns = offline_book(candles, artifacts["champion"], hours)
    shadow_curve = shadow.sort_values("hour")["equity"].to_numpy()
    traded_curve = equity.sort_values("hour")["equity"].to_numpy()
    offline = pd.DataFrame({"champion": champion_returns, "challenger": returns}, index=hours)
    days = (1.0 + offline).groupby(offline.index.floor("D")).prod() - 1.0
    side = compare(Ledger(ledger_url), symbol)
    decision = decide(side, params.publish.challenger)
    expected = (days["challenger"] - days["champion"]).to_numpy()
    return {
        "symbol": symbol,
        "hours": len(hours),
        "shadow_calls_equal_positions": bool((calls["target"].to_numpy() == position).all()),
        "shadow_changes": int(np.count_nonzero(np.diff(position))),
        "shadow_return": float(shadow_curve[-1] - 1.0),
        "shadow_max_rel_diff": float(np.max(np.abs(shadow_curve / np.cumprod(1.0 + returns) - 1.0))),
        "champion_return": float(traded_curve[-1] - 1.0),
        "champion_max_rel_diff": float(
            np.max(np.abs(traded_curve / np.cumprod(1.0 + champion_returns) - 1.0))
        ),
        "evidence_equal": bool(np.allclose(side.daily_difference.to_numpy(), expected, rtol=1e-9, atol=1e-15)),
        "rule": decision.action,
        "rule_lower": decision.evidence.get("lower"),
        "rule_upper": decision.evidence.get("upper"),
    }


def markdown(result: dict) -> str:
    lines = [
        f"Shadow replay, {result['span']} ({result['replay_seconds']} s of replay): every symbol's "
        f"books equal their offline backtests: {result['all_equal']}",
        "",
        "| symbol | hours | shadow return | its max rel. diff | champion return | its max rel. diff "
        "| rule | recorded |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["symbols"]:
        lines.append(
            f"| {r['symbol']} | {r['hours']} | {r['shadow_return']:+.2%} | {r['shadow_max_rel_diff']:.1e} "
            f"| {r['champion_return']:+.2%} | {r['champion_max_rel_diff']:.1e} | {r['rule']} | {r['recorded']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main_())
