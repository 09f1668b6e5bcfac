"""The trader under the exchange's faults: issue 32's fault run.

Every case runs `klinecast trade once`'s cycle (`live.trader`: python-binance and the testnet
broker, against the Binance stand-in of tests/support/binance_server.py, which applies the
symbol filters, takes a BUY's commission in the base asset, can leave orders open, books
requests late and enforces timestamp + recvWindow) on a PostgreSQL ledger of the run's own,
over the mirror's real candles of December 2021. The model's answer is a rule that opens and
closes by itself: long while the close is above the close three hours before, else flat.

  kill-<step>-<follow>  the cycle in a process of its own, SIGKILLed at each step of an order
                        (before anything, intent committed, booked but unanswered, answer
                        unrecorded, fill recorded), then the same hour or the next again
  late-<when>           the order POST times out (2 s) and lands 3 s after it was sent
                        (within its 5 s recvWindow) or 6.5 s (after it: refused)
  open-orders           orders left NEW with their cancels refused for three cycles, then
                        PARTIALLY_FILLED orders cancelled at the next cycle, over 12 hours
  base-fees-48h         48 hours of the rule, every BUY's commission taken in BTC
  five-symbols-24h      the five-symbol book (capital 1000 USDT, equal weights, the
                        example's caps) with each symbol's filters, 24 hours

After every cycle (and at the end of a case) it checks: the stand-in's orders are the
ledger's, with what executed of each, and no client order id is booked twice; the account's
holding of each base asset equals the ledger's position and dust within one step; no hour's
record is rewritten (every row seen earlier is still there, unchanged); and the exchange never
held more than the cap, open orders included (the stand-in keeps the peak after every booking
and execution). JSON in benchmarks/results/bench_trader_faults.json, and a Markdown table.

Usage: python benchmarks/bench_trader_faults.py [--hours 48] [--only kill,late,...]
(`make bench-trader-faults`; about 6 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, from the repo

from klinecast.config import DataParams, params_from_mapping  # noqa: E402
from klinecast.data.build import build_candles  # noqa: E402
from klinecast.research.strategy import StrategyRule  # noqa: E402
from klinecast.serving.client import Prediction  # noqa: E402
from klinecast.trader import live  # noqa: E402
from klinecast.trader.cycle import run_book, run_once  # noqa: E402
from klinecast.trader.ledger import BOOKED, Ledger  # noqa: E402
from tests.support.binance_server import API_KEY, API_SECRET, BinanceServer  # noqa: E402
from tests.support.helpers import drop_ledger, free_port, table, table_locked  # noqa: E402
from tests.support.paths import MIRROR  # noqa: E402
from tests.support.pg_server import postgres_url  # noqa: E402

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
CAPS = {"BTCUSDT": 0.01, "ETHUSDT": 1.0, "BNBUSDT": 5.0, "SOLUSDT": 30.0, "XRPUSDT": 5000.0}
START = pd.Timestamp("2021-12-01 00:00", tz="UTC")
RULE = StrategyRule("long_only", 0.0, 0.0, 1, 1)
SIZE = 0.001  # BTC per position, and the cap, in the one-symbol cases
STEPS = ("before_anything", "intent_committed", "booked_unanswered", "answer_unrecorded",
         "fill_recorded")  # fmt: skip


def momentum(candles: pd.DataFrame) -> Prediction:
    """The rule's answer: long while the close is above the close three hours before."""
    closes = candles["close"]
    prob = 0.9 if closes.iloc[-1] > closes.iloc[-4] else 0.1
    return Prediction(prob, "momentum-3h", str(candles.index[-1] + pd.Timedelta(hours=1)), RULE)


def mirror_candles() -> dict[str, pd.DataFrame]:
    """The mirror's hourly candles of 2021, per symbol."""
    monthly = MIRROR / "data/spot/monthly/klines"
    return {
        symbol: build_candles(
            monthly / symbol / "1h",
            DataParams(symbols=(symbol,), start=dt.date(2021, 1, 1), end=dt.date(2021, 12, 31)),
        )[0]
        for symbol in SYMBOLS
    }


def one_symbol_params(ledger: str, **trade):
    values = {"broker": "testnet", "request": "candles", "ledger": ledger, "quantity": SIZE,
              "max_quantity": SIZE, "exchange_timeout_seconds": 2.0} | trade  # fmt: skip
    return params_from_mapping({"trade": values})


def book_params(ledger: str):
    return params_from_mapping({
        "data": {"symbols": list(SYMBOLS)},
        "trade": {"broker": "testnet", "request": "symbol", "ledger": ledger, "capital": 1000.0,
                  "max_quantity": CAPS["BTCUSDT"], "exchange_timeout_seconds": 2.0,
                  "max_quantities": {s: c for s, c in CAPS.items() if s != "BTCUSDT"}},
    })  # fmt: skip


class Checks:
    """The fault run's invariants, checked after every cycle of a case (a cycle killed midway
    is followed by the next before the ledger and the exchange are compared: the one
    reconciles with the other first)."""

    def __init__(self, exchange: BinanceServer, ledger: str, caps: dict[str, float]):
        self.exchange, self.ledger, self.caps = exchange, ledger, caps
        self.seen: dict[tuple, dict] = {}  # (symbol, hour, attempt) -> the row as first seen
        self.rewritten = 0
        self.worst_steps = 0.0  # the largest |exchange - ledger|, in steps of the symbol
        self.unmatched: list[str] = []
        self.cycles = 0

    def __call__(self) -> None:
        self.cycles += 1
        with self.exchange.lock:
            booked = [dict(o) for o in self.exchange.booked]
            holdings = {s: self.exchange.position(asset=r.base) for s, r in self.exchange.rules.items()}
        orders = {o["client_order_id"]: o for o in table(self.ledger, "orders")}
        ids = [o["clientOrderId"] for o in booked]
        self.unmatched += [f"{i} booked twice" for i in set(ids) if ids.count(i) > 1]
        for order in booked:  # the newest state of each at the stand-in, against the ledger's
            current = self.exchange.orders[order["clientOrderId"]]
            ours = orders.get(order["clientOrderId"])
            if ours is None or ours["status"] not in BOOKED + ("intent",):
                self.unmatched.append(f"{order['clientOrderId']} booked, ledger: {ours and ours['status']}")
            elif ours["status"] != "intent" and abs(ours["executed_qty"] - float(current["executedQty"])) > 1e-9:
                self.unmatched.append(f"{order['clientOrderId']} executed {current['executedQty']}, ledger {ours['executed_qty']}")
        positions = {p["symbol"]: p["qty"] + p["dust"] for p in table(self.ledger, "positions")}
        for symbol in self.caps:
            step = float(self.exchange.rules[symbol].step)
            gap = abs(holdings[symbol] - positions.get(symbol, 0.0)) / step
            self.worst_steps = max(self.worst_steps, gap)
        self.records()

    def records(self) -> None:
        """Every hour's record seen so far is still there, unchanged (also mid-fault)."""
        for row in table(self.ledger, "predictions"):
            key = (row["symbol"], str(row["hour"]), row["attempt"])
            if key in self.seen and self.seen[key] != row:
                self.rewritten += 1
            self.seen.setdefault(key, row)
        now = {(r["symbol"], str(r["hour"]), r["attempt"]) for r in table(self.ledger, "predictions")}
        self.rewritten += len(set(self.seen) - now)  # a row that vanished was rewritten too

    def summary(self, started: float) -> dict:
        self()
        unknown = [o["client_order_id"] for o in table(self.ledger, "orders") if o["status"] == "intent"]
        self.unmatched += [f"{i}: its fate still unknown at the end" for i in unknown]
        booked = self.exchange.booked
        peak = {s: self.exchange.peak.get(s, 0.0) / cap for s, cap in self.caps.items()}
        failures = table(self.ledger, "failures")
        result = {
            "cycles": self.cycles - 1,
            "orders_booked": len(booked),
            "order_posts": self.exchange.order_posts(),
            "refused_by_exchange": len(self.exchange.refused),
            "refusals": sorted({f"{code} {msg}" for _, code, msg in self.exchange.refused}),
            "failures_on_record": len(failures),
            "halts": len(table(self.ledger, "halts")),
            "records": len(self.seen),
            "records_rewritten": self.rewritten,
            "worst_difference_steps": round(self.worst_steps, 6),
            "peak_over_cap": round(max(peak.values()), 6),
            "unmatched": self.unmatched,
            "seconds": round(time.monotonic() - started, 1),
        }
        result["holds"] = (
            not self.unmatched and self.rewritten == 0 and self.worst_steps <= 1 + 1e-9
            and result["peak_over_cap"] <= 1 + 1e-9
        )  # fmt: skip
        return result


@contextmanager
def exchange_for(candles, env: dict):
    with BinanceServer(candles) as server:
        os.environ["KLINECAST_BINANCE_URL"] = server.url
        env["KLINECAST_BINANCE_URL"] = server.url
        yield server


def cycle(params, exchange: BinanceServer, hour: pd.Timestamp):
    exchange.market_hour = hour
    trader = live.trader(params)
    trader.predict = momentum
    return run_once(trader, hour=hour)


def opening_hour(candles: pd.DataFrame) -> pd.Timestamp:
    """The first hour from START at which the rule, from flat, goes long."""
    for hour in pd.date_range(START, periods=72, freq="h"):
        if momentum(candles.loc[:hour]).prob_up > 0.5:
            return hour
    raise SystemExit("the rule stays flat for three days")


def _child(params, hour: pd.Timestamp, env: dict) -> None:
    """A cycle in a process of its own (the CronJob's pod), to be killed."""
    os.environ.update(env)
    trader = live.trader(params)
    trader.predict = momentum
    run_once(trader, hour=hour)


def wait_until(condition, *, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the cycle never reached the step")
        time.sleep(0.05)


def kill_case(candles, ledger: str, env: dict, step: str, follow: str) -> dict:
    started = time.monotonic()
    drop_ledger(ledger)
    Ledger(ledger).migrate()  # the tables exist, so that one can be locked
    params = one_symbol_params(ledger)
    btc = candles["BTCUSDT"]
    hour = opening_hour(btc)
    spawn = multiprocessing.get_context("spawn")
    with exchange_for(btc, env) as exchange:
        exchange.market_hour = hour
        checks = Checks(exchange, ledger, {"BTCUSDT": SIZE})

        def ledger_orders():
            return table(ledger, "orders")

        process = spawn.Process(target=_child, args=(params, hour, env))
        if step == "before_anything":
            with table_locked(ledger, "orders", "ACCESS EXCLUSIVE"):
                process.start()
                time.sleep(6)
                process.kill()
        elif step == "intent_committed":
            exchange.late_landings = [2.0]  # on its way still when the cycle dies
            process.start()
            wait_until(lambda: any(o["status"] == "intent" for o in ledger_orders()))
            time.sleep(0.3)
            process.kill()
            wait_until(lambda: exchange.arrivals == exchange.order_posts())
        elif step == "booked_unanswered":
            exchange.hang_after_order_s = 30
            process.start()
            wait_until(lambda: len(exchange.booked) == 1)
            process.kill()
            exchange.hang_after_order_s = 0
        elif step == "answer_unrecorded":
            with table_locked(ledger, "positions", "EXCLUSIVE"):
                process.start()
                wait_until(lambda: len(exchange.booked) == 1)
                time.sleep(1)
                process.kill()
        else:
            with table_locked(ledger, "predictions", "EXCLUSIVE"):
                process.start()
                wait_until(lambda: any(o["status"] == "filled" for o in ledger_orders()))
                time.sleep(0.5)
                process.kill()
        process.join()
        checks.records()
        follow_up = hour if follow == "same_hour" else hour + pd.Timedelta(hours=1)
        for later in (follow_up, follow_up + pd.Timedelta(hours=1), follow_up + pd.Timedelta(hours=2)):
            cycle(params, exchange, later)
            checks()
        return checks.summary(started)


def late_case(candles, ledger: str, env: dict, landing_s: float) -> dict:
    started = time.monotonic()
    drop_ledger(ledger)
    params = one_symbol_params(ledger)
    btc = candles["BTCUSDT"]
    hour = opening_hour(btc)
    with exchange_for(btc, env) as exchange:
        checks = Checks(exchange, ledger, {"BTCUSDT": SIZE})
        exchange.late_landings = [landing_s]
        cycle(params, exchange, hour)
        wait_until(lambda: exchange.arrivals == exchange.order_posts())
        checks()
        for later in pd.date_range(hour + pd.Timedelta(hours=1), periods=3, freq="h"):
            cycle(params, exchange, later)
            checks()
        return checks.summary(started)


def open_orders_case(candles, ledger: str, env: dict, hours: int = 12) -> dict:
    started = time.monotonic()
    drop_ledger(ledger)
    params = one_symbol_params(ledger)
    btc = candles["BTCUSDT"]
    first = opening_hour(btc)
    with exchange_for(btc, env) as exchange:
        checks = Checks(exchange, ledger, {"BTCUSDT": SIZE})
        exchange.leave_open = "NEW"
        for i, hour in enumerate(pd.date_range(first, periods=hours, freq="h")):
            if i == 1:
                exchange.refuse_cancels = 3  # still open, and not cancellable, three cycles
            if i == 4:
                exchange.fill_open()
                exchange.leave_open = "PARTIALLY_FILLED"
            cycle(params, exchange, hour)
            checks()
        exchange.leave_open = None
        return checks.summary(started)


def base_fees_case(candles, ledger: str, env: dict, hours: int) -> dict:
    started = time.monotonic()
    drop_ledger(ledger)
    params = one_symbol_params(ledger)
    btc = candles["BTCUSDT"]
    with exchange_for(btc, env) as exchange:
        checks = Checks(exchange, ledger, {"BTCUSDT": SIZE})
        for hour in pd.date_range(START, periods=hours, freq="h"):
            cycle(params, exchange, hour)
            checks()
        result = checks.summary(started)
        sides = [o["side"] for o in exchange.booked]
        result |= {"buys": sides.count("BUY"), "sells": sides.count("SELL"),
                   "dust_BTC": table(ledger, "positions")[0]["dust"]}  # fmt: skip
        return result


def five_symbols_case(candles, ledger: str, env: dict, hours: int = 24) -> dict:
    started = time.monotonic()
    drop_ledger(ledger)
    params = book_params(ledger)
    with exchange_for(candles, env) as exchange:
        checks = Checks(exchange, ledger, CAPS)
        for hour in pd.date_range(START, periods=hours, freq="h"):
            exchange.market_hour = hour
            traders = live.book(params)
            for trader in traders.values():
                trader.predict = momentum
            run_book(traders, params, hour=hour)
            checks()
        return checks.summary(started)


def markdown(cases: dict[str, dict]) -> str:
    lines = [
        "| case | cycles | orders booked (POSTs) | refused by the exchange | records (rewritten) "
        "| worst ledger-exchange gap (steps) | peak / cap | halts | holds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in cases.items():
        lines.append(
            f"| {name} | {c['cycles']} | {c['orders_booked']} ({c['order_posts']}) | "
            f"{c['refused_by_exchange']} | {c['records']} ({c['records_rewritten']}) | "
            f"{c['worst_difference_steps']:.3g} | {c['peak_over_cap']:.3f} | {c['halts']} | "
            f"{'yes' if c['holds'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=int, default=48, help="of the base-fees case")
    parser.add_argument("--only", default="kill,late,open,fees,five", help="cases to run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_trader_faults.json"))
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))
    env = {"BINANCE_API_KEY": API_KEY, "BINANCE_API_SECRET": API_SECRET}
    os.environ.update(env)
    candles = mirror_candles()
    cases: dict[str, dict] = {}
    with postgres_url(free_port()) as ledger:
        if "kill" in wanted:
            for step in STEPS:
                for follow in ("same_hour", "next_hour"):
                    cases[f"kill-{step}-{follow}"] = kill_case(candles, ledger, env, step, follow)
                    print(f"kill-{step}-{follow}: {cases[f'kill-{step}-{follow}']}", flush=True)
        if "late" in wanted:
            for name, landing in (("within-window", 3.0), ("after-window", 6.5)):
                cases[f"late-{name}"] = late_case(candles, ledger, env, landing)
                print(f"late-{name}: {cases[f'late-{name}']}", flush=True)
        if "open" in wanted:
            cases["open-orders"] = open_orders_case(candles, ledger, env)
            print(f"open-orders: {cases['open-orders']}", flush=True)
        if "fees" in wanted:
            cases[f"base-fees-{args.hours}h"] = base_fees_case(candles, ledger, env, args.hours)
            print(f"base-fees: {cases[f'base-fees-{args.hours}h']}", flush=True)
        if "five" in wanted:
            cases["five-symbols-24h"] = five_symbols_case(candles, ledger, env)
            print(f"five-symbols: {cases['five-symbols-24h']}", flush=True)
    document = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "make bench-trader-faults",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "all_hold": all(c["holds"] for c in cases.values()),
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(markdown(cases))
    return 0 if document["all_hold"] else 1


if __name__ == "__main__":
    sys.exit(main())
