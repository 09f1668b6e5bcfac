"""The trading rule: from the model's probability (and the position held) to the next position.

One pure function, `step`, decides every hour. The backtest runs it over a whole span
(`positions`), the trader runs it once an hour with its ledger's position (`next_position`),
and the transformer answers with it from a flat book, so the three cannot disagree.

The rule, for a probability p that the price is higher `horizon_hours` from now:

- from flat, go long when p > 0.5 + entry_band, short when p < 0.5 - entry_band (`long_short`
  only; `long_only` stays flat, which is what a spot account can do);
- a long stays long while p > 0.5 + exit_band, a short stays short while p < 0.5 - exit_band;
  exit_band <= entry_band, so a position is not flipped by noise around the entry level
  (hysteresis). Leaving, it goes flat, or straight to the other side if p crosses that side's
  entry band;
- a position is held at least min_hold_hours hours before it may change;
- with a cadence of k hours, the position may change only at decision times whose UTC hour is
  a multiple of k (k = 24: once a day, at 00:00), which cuts the turnover of a probability that
  swings hour to hour.

The seed's rule (long above 0.5, short below, every hour) is `long_short` with both bands 0
and min_hold_hours 1.

Meta-labels: a rule may have a `primary`, a trend rule among the features (`trend_50d`: long
when the close is above its 50-day average, decided daily). The primary proposes each bet and
the classifier, trained only on the hours the primary proposes one, learns which bets to take.
`meta_probability` is where the two meet: the classifier's probability where the primary
proposes a long, and 0.5 (`NO_BET`) where it proposes none, which `step` reads as flat at once,
ahead of the minimum hold and the cadence. The backtest, the transformer and so the trader act
on that one probability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from klinecast.config import NO_PRIMARY, SIDES


@dataclass(frozen=True)
class StrategyRule:
    """The levers of the rule; tuned with the model and shipped in its metadata."""

    side: str = "long_short"
    entry_band: float = 0.0
    exit_band: float = 0.0
    min_hold_hours: int = 1
    #: the position may change only at decision times whose UTC hour is a multiple of this
    #: (24: once a day, at 00:00)
    cadence_hours: int = 1
    #: the feature whose rule proposes the bets the model takes or skips (meta-labels), e.g.
    #: trend_50d; "none": the model proposes every bet itself
    primary: str = NO_PRIMARY

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side: expected one of {list(SIDES)}, got {self.side!r}")
        if self.primary != NO_PRIMARY and self.side != "long_only":
            raise ValueError(
                f"primary {self.primary}: a primary proposes long bets only, so the side must "
                f"be long_only, got {self.side}"
            )
        if not 0 <= self.exit_band <= self.entry_band < 0.5:
            raise ValueError(
                f"bands: expected 0 <= exit_band <= entry_band < 0.5, got exit {self.exit_band} "
                f"and entry {self.entry_band}"
            )
        if self.min_hold_hours < 1:
            raise ValueError(f"min_hold_hours: expected at least 1, got {self.min_hold_hours}")
        if not 1 <= self.cadence_hours <= 24 or 24 % self.cadence_hours:
            raise ValueError(
                f"cadence_hours: expected a divisor of 24, got {self.cadence_hours}"
            )

    def may_change(self, decision_hour: int) -> bool:
        """Whether the rule may change position at a decision time of this UTC hour."""
        return decision_hour % self.cadence_hours == 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> StrategyRule:
        """The rule's fields out of a larger mapping (a candidate, a served answer).

        Raises:
            KeyError: a field without a default is missing.
        """
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


SEED_RULE = StrategyRule()


#: The probability a meta-labelled rule acts on where its primary proposes no bet. `step`
#: reads it, for a rule with a primary, as "flat at once", ahead of the minimum hold and the
#: cadence: the model only takes or skips the primary's bets. (A classifier's own 0.5 never
#: enters a position either; only the hold would have kept one.)
NO_BET = 0.5


def primary_of(frame, rule: StrategyRule) -> np.ndarray:
    """The rule's primary feature, row by row, from a feature frame (1 everywhere for a rule
    without a primary: the model proposes every bet itself)."""
    if rule.primary == NO_PRIMARY:
        return np.ones(len(frame))
    return frame[rule.primary].to_numpy(dtype=float)


def proposed(primary: np.ndarray) -> np.ndarray:
    """Where a primary feature proposes a (long) bet: 1; 0 or missing propose none."""
    return np.nan_to_num(np.asarray(primary, dtype=float)) > 0.5


def bets_of(frame, rule: StrategyRule):
    """The rows of a feature frame on which the rule's primary proposes a bet (every row for a
    rule without a primary): what a meta-labelled model learns from."""
    return frame[proposed(primary_of(frame, rule))]


def meta_probability(proba, rule: StrategyRule, primary=None):
    """The probability the rule acts on: the classifier's where the primary proposes a bet,
    0.5 (no view: flat) where it proposes none; the classifier's everywhere without a primary.
    The backtest and the transformer both call it.

    Raises:
        ValueError: the rule has a primary and its values were not given.
    """
    if rule.primary == NO_PRIMARY:
        return proba
    if primary is None:
        raise ValueError(f"a rule with the primary {rule.primary} needs that feature's values")
    return np.where(proposed(primary), proba, NO_BET)


@dataclass(frozen=True)
class Holding:
    """The book before a decision: the position and for how many hours it has been held."""

    position: int = 0
    hours: int = 0


FLAT = Holding()


def step(
    prob: float, rule: StrategyRule, holding: Holding, *, decision_hour: int | None = None
) -> Holding:
    """The position for the next hour, given the probability, what is held now and the UTC hour
    of the decision (the time the row's candle closed)."""
    position = holding.position
    if rule.primary != NO_PRIMARY and prob == NO_BET:
        return FLAT  # the primary proposes no bet: flat at once, whatever the hold or cadence
    if decision_hour is None:
        if rule.cadence_hours != 1:
            raise ValueError("a rule with a cadence needs the decision's hour")
    elif not rule.may_change(decision_hour):
        return Holding(position, holding.hours + 1) if position != 0 else FLAT
    if position != 0 and holding.hours < rule.min_hold_hours:
        return Holding(position, holding.hours + 1)
    long_entry, short_entry = prob > 0.5 + rule.entry_band, prob < 0.5 - rule.entry_band
    if position > 0 and prob > 0.5 + rule.exit_band:
        target = 1
    elif position < 0 and prob < 0.5 - rule.exit_band:
        target = -1
    elif long_entry:
        target = 1
    elif short_entry and rule.side == "long_short":
        target = -1
    else:
        target = 0
    if target == 0:
        return FLAT
    return Holding(target, holding.hours + 1 if target == position else 1)


def next_position(
    prob: float, rule: StrategyRule, holding: Holding = FLAT, *, decision_hour: int | None = None
) -> int:
    """One decision, e.g. the trader's with its ledger's holding (-1, 0 or 1)."""
    return step(prob, rule, holding, decision_hour=decision_hour).position


def positions(
    proba: np.ndarray,
    rule: StrategyRule,
    start: Holding = FLAT,
    *,
    decision_hours: np.ndarray | None = None,
) -> tuple[np.ndarray, Holding]:
    """Positions hour by hour over a span, and the holding after its last hour.

    `start` carries the book over from the span before (the walk-forward's previous fold);
    `decision_hours` are the UTC hours at which each row's decision is made (needed by a rule
    with a cadence).
    """
    out = np.empty(len(proba), dtype=np.int8)
    holding = start
    hours = [None] * len(proba) if decision_hours is None else np.asarray(decision_hours).tolist()
    for i, prob in enumerate(np.asarray(proba, dtype=float).tolist()):
        holding = step(prob, rule, holding, decision_hour=hours[i])
        out[i] = holding.position
    return out, holding


def holding_from_positions(history: list[int]) -> Holding:
    """The holding after a sequence of hourly positions, oldest first (a ledger's trades)."""
    if not history or history[-1] == 0:
        return FLAT
    last, hours = history[-1], 0
    for position in reversed(history):
        if position != last:
            break
        hours += 1
    return Holding(last, hours)
