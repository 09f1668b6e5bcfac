"""Live model health from the ledger: directional accuracy, equity against buy-and-hold,
feature drift (PSI), and the retrain decision with its cooldown."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from klinecast.config import Params, TradeParams

#: The ledger state that held the one retrain time of the whole book before each symbol had
#: its own; read as a symbol's last trigger when the symbol has none yet (no cooldown lost).
RETRAIN_STATE = "retrain_triggered_at"


def retrain_state_key(symbol: str) -> str:
    """The ledger state holding when symbol's retrain last fired: each symbol's cooldown."""
    return f"{RETRAIN_STATE}:{symbol}"


def psi(reference: np.ndarray, live: np.ndarray, *, bins: int = 10) -> float:
    """Population stability index of live against reference, on reference deciles.

    0.1 is commonly read as a moderate shift and 0.25 as a large one.
    """
    reference = np.asarray(reference, dtype=float)
    live = np.asarray(live, dtype=float)
    reference, live = reference[np.isfinite(reference)], live[np.isfinite(live)]
    if len(reference) < bins or len(live) == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, live), minlength=len(edges) + 1)
    expected = np.clip(expected / expected.sum(), 1e-4, None)
    actual = np.clip(actual / actual.sum(), 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class Drift:
    """PSI of each feature at the traded hours against the training window before them.

    Below `min_samples` live hours a PSI says nothing (one hour lands in one decile and scores
    about 6.8 on every feature), so none is computed and `note` says why.
    """

    samples: int  # traded hours with features
    min_samples: int
    psi: dict[str, float]

    @property
    def note(self) -> str:
        if self.samples < self.min_samples:
            return (
                f"too few samples: {self.samples} traded hour(s), PSI needs at least "
                f"{self.min_samples} (trade.drift_min_samples)"
            )
        return f"PSI over {self.samples} traded hours"


NO_DRIFT = Drift(0, 0, {})


def feature_drift(
    features: pd.DataFrame,
    live_hours: pd.DatetimeIndex,
    names: list[str],
    *,
    reference_days: int,
    min_samples: int,
) -> Drift:
    """Drift of the traded hours' features against the reference_days before the first one."""
    live = features.reindex(live_hours).dropna(how="all") if len(live_hours) else features[:0]
    if len(live) < min_samples:
        return Drift(len(live), min_samples, {})
    first = live_hours.min()
    reference = features[
        (features.index < first) & (features.index >= first - pd.Timedelta(days=reference_days))
    ]
    return Drift(
        len(live),
        min_samples,
        {
            name: psi(reference[name].to_numpy(), live[name].to_numpy())
            for name in names
            if name in features.columns
        },
    )


@dataclass(frozen=True)
class Health:
    trades: int
    window: int
    accuracy: float | None  # share of the last `window` trades that were right
    equity: float
    buy_and_hold: float
    drift: dict[str, float]
    drift_samples: int
    drift_note: str

    def as_dict(self) -> dict:
        return asdict(self)


def health(outcomes: pd.DataFrame, drift: Drift, params: TradeParams) -> Health:
    """outcomes: the ledger's outcomes (hour, target, correct, strategy_return, market_return).
    A trade is an hour the model called (a position, right or wrong); an hour held without a
    call (no trade, a failure, a halt) counts in the equity only."""
    trades = outcomes[outcomes["correct"].notna()] if len(outcomes) else outcomes
    recent = trades.tail(params.retrain_window)
    accuracy = float(recent["correct"].astype(float).mean()) if len(recent) else None
    equity = float(np.prod(1.0 + outcomes["strategy_return"])) if len(outcomes) else 1.0
    hold = float(np.prod(1.0 + outcomes["market_return"])) if len(outcomes) else 1.0
    return Health(
        len(trades), params.retrain_window, accuracy, equity, hold, drift.psi, drift.samples,
        drift.note,
    )  # fmt: skip


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str


def retrain_decision(
    state: Health, params: TradeParams, *, last_trigger: dt.datetime | None, now: dt.datetime
) -> Decision:
    """The seed's rule: fewer than retrain_min_accuracy of the last retrain_window trades right,
    and no trigger within retrain_cooldown_hours."""
    if state.accuracy is None or state.trades < params.retrain_window:
        return Decision(
            False, f"{state.trades} trade(s) so far; the rule needs {params.retrain_window}"
        )
    rule = f"{state.accuracy:.0%} of the last {params.retrain_window} trades right"
    if state.accuracy >= params.retrain_min_accuracy:
        return Decision(False, f"{rule} (>= {params.retrain_min_accuracy:.0%})")
    cooldown = dt.timedelta(hours=params.retrain_cooldown_hours)
    if last_trigger is not None and now - last_trigger < cooldown:
        return Decision(
            False,
            f"{rule}, but a retrain was triggered at {last_trigger:%Y-%m-%d %H:%M} (cooldown {cooldown})",
        )
    return Decision(True, f"{rule} (< {params.retrain_min_accuracy:.0%})")


@dataclass(frozen=True)
class Trading:
    """What an operator must see of the trader's safety: orders whose end is unknown for over
    an hour since they were created, halted symbols, real differences with the exchange, and
    hours in a row without a trade with the failure behind them."""

    #: client order ids of orders created over STUCK_AFTER ago that no cycle has resolved
    stuck_intents: tuple[str, ...]
    #: symbol -> (kind, reason) of each halt that holds
    halted: dict[str, tuple[str, str]]
    #: symbol -> the exchange's position minus the ledger's at the last reconciliation, when
    #: they disagreed beyond its tolerance (0: they agreed)
    reconcile_difference: dict[str, float]
    #: symbol -> its newest hours in a row recorded no_trade or failed
    idle_hours: dict[str, int] = field(default_factory=dict)
    #: symbol -> its last failure since its last traded hour ("stage (code): message")
    last_failure: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "stuck_intents": list(self.stuck_intents),
            "halted": {k: {"kind": v[0], "reason": v[1]} for k, v in self.halted.items()},
            "reconcile_difference": self.reconcile_difference,
            "idle_hours": self.idle_hours,
            "last_failure": self.last_failure,
        }

    @property
    def alarm(self) -> bool:
        """Something an operator must act on."""
        return bool(
            self.halted or self.stuck_intents or any(self.reconcile_difference.values())
            or any(self.idle_hours.values())
        )  # fmt: skip

    @property
    def summary(self) -> str:
        parts = [f"{len(self.stuck_intents)} stuck intent(s)"]
        parts += [f"{s} HALTED ({kind}: {reason})" for s, (kind, reason) in self.halted.items()]
        parts += [
            f"{s} differs from the exchange by {d:+.8f}"
            for s, d in self.reconcile_difference.items()
            if d
        ]
        for symbol, hours in self.idle_hours.items():
            if hours:
                why = f" (last failure: {self.last_failure[symbol]})" if symbol in self.last_failure else ""
                parts.append(f"{symbol}: {hours} hour{'s' if hours > 1 else ''} in a row without a trade{why}")
        return "; ".join(parts)


#: An order no cycle resolved this long after it was created is stuck (a cycle resolves every
#: one it meets).
STUCK_AFTER = dt.timedelta(hours=1)
#: The statuses of an hour without a trade.
IDLE = ("no_trade", "failed")


def trading_state(ledger, *, symbol: str, now: dt.datetime) -> Trading:
    stuck = tuple(
        o.client_order_id for o in ledger.unresolved_orders() if now - o.created_at > STUCK_AFTER
    )
    halted = {h.symbol: (h.kind, h.reason) for h in ledger.halts() if h.resumed_at is None}
    latest = ledger.latest_reconciliation(symbol)
    difference = {}
    if latest is not None:  # a difference within the tolerance (float noise, dust) is none
        difference[symbol] = 0.0 if latest["agree"] else float(latest["difference"])
    records = ledger.hour_records(symbol)
    idle = 0
    for record in reversed(records):
        if record["status"] not in IDLE:
            break
        idle += 1
    traded = [r["created_at"] for r in records if r["status"] == "traded"]
    since = traded[-1] if traded else None
    failures = [f for f in ledger.cycle_failures(symbol) if since is None or f["at"] > since]
    last = {}
    if failures:
        newest = failures[-1]
        code = "" if newest["code"] is None else f" {newest['code']}"
        last[symbol] = f"{newest['stage']}{code}: {newest['message']}"
    return Trading(stuck, halted, difference, {symbol: idle}, last)


@dataclass(frozen=True)
class Check:
    """One run of the monitor: the health, the decision, and the retrain it fired (if any)."""

    health: Health
    decision: Decision
    #: the ledger's outcomes (hour, target, correct, strategy_return, market_return)
    outcomes: pd.DataFrame
    triggered: str | None
    trading: Trading | None = None

    def as_dict(self) -> dict:
        """monitor.json."""
        return self.health.as_dict() | {
            "retrain": self.decision.retrain,
            "reason": self.decision.reason,
            "triggered": self.triggered,
            "trading": self.trading.as_dict() if self.trading else None,
        }


def check(
    params: Params,
    ledger,
    *,
    features: pd.DataFrame | None,
    reference_days: int,
    now: dt.datetime,
    retrain: Callable[[str, str], str] | None = None,
) -> Check:
    """Reads the ledger's outcomes of params' one symbol, measures drift against the features' training window,
    decides on a retrain and, with a trigger target, fires it (then waits out the symbol's own
    cooldown: one symbol's retrain delays no other's).

    Args:
        ledger: the trader's Ledger.
        features: the feature rows (None: no drift is measured).
        reference_days: the training window before the first traded hour that PSI compares with.
        retrain: fires a retrain for (symbol, the decision's reason) and says what it started
            (the platform's retrain.trigger for a target); None only reports.
    """
    symbol = params.data.symbol
    outcomes = pd.DataFrame(
        ledger.outcomes(symbol),
        columns=["hour", "target", "correct", "strategy_return", "market_return"],
    )
    drift = NO_DRIFT
    if features is not None:
        live_hours = pd.DatetimeIndex([r["hour"] for r in ledger.traded_predictions(symbol)])
        drift = feature_drift(
            features,
            live_hours,
            list(params.features.indicators),
            reference_days=reference_days,
            min_samples=params.trade.drift_min_samples,
        )
    state = health(outcomes, drift, params.trade)
    last = ledger.get_state(retrain_state_key(symbol)) or ledger.get_state(RETRAIN_STATE)
    last_trigger = dt.datetime.fromisoformat(last) if last else None
    decision = retrain_decision(state, params.trade, last_trigger=last_trigger, now=now)
    fired = None
    if decision.retrain and retrain is not None:
        fired = retrain(symbol, decision.reason)
        ledger.set_state(retrain_state_key(symbol), now.isoformat())
    trading = trading_state(ledger, symbol=params.data.symbol, now=now)
    return Check(state, decision, outcomes, fired, trading)


def prometheus_text(
    state: Health, *, symbol: str, trading: Trading | None = None, shadow=None
) -> str:
    """The state in Prometheus' text exposition format (for a textfile collector or a scrape),
    with the challenger's shadow book beside the champion (a `monitor.shadow_view.ShadowView`)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    gauges = {
        "klinecast_live_accuracy": ("share of the last N trades that were right", state.accuracy),
        "klinecast_live_equity": ("growth of 1 after fees", state.equity),
        "klinecast_buy_and_hold_equity": ("growth of 1, buy and hold", state.buy_and_hold),
        "klinecast_live_trades": ("trades with an outcome", state.trades),
    }
    for name, (doc, value) in gauges.items():
        gauge = Gauge(name, doc, ["symbol"], registry=registry)
        gauge.labels(symbol).set(float("nan") if value is None else value)
    drift = Gauge(
        "klinecast_feature_psi",
        "PSI of live vs training features",
        ["symbol", "feature"],
        registry=registry,
    )
    for feature, value in state.drift.items():
        drift.labels(symbol, feature).set(value)
    if trading is not None:
        Gauge(
            "klinecast_stuck_intents", "orders whose end is unknown an hour after they were made",
            registry=registry,
        ).set(len(trading.stuck_intents))  # fmt: skip
        halted = Gauge(
            "klinecast_halted", "1 while the symbol is halted", ["symbol", "kind"], registry=registry
        )
        halted.labels(symbol, "any").set(1 if symbol in trading.halted else 0)
        for held, (kind, _) in trading.halted.items():
            halted.labels(held, kind).set(1)
        gap = Gauge(
            "klinecast_reconcile_difference",
            "the exchange's position minus the ledger's at the last reconciliation, when beyond "
            "its tolerance (else 0)",
            ["symbol"],
            registry=registry,
        )
        for held, difference in trading.reconcile_difference.items():
            gap.labels(held).set(difference)
        idle = Gauge(
            "klinecast_hours_without_trade",
            "the newest hours in a row recorded no_trade or failed",
            ["symbol"],
            registry=registry,
        )
        for held, hours in trading.idle_hours.items():
            idle.labels(held).set(hours)
    if shadow is not None:
        from klinecast.monitor.shadow_view import gauges

        gauges(shadow, symbol=symbol, registry_=registry)
    return generate_latest(registry).decode()
