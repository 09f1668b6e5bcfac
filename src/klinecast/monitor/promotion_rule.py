"""The promotion rule: whether a challenger's shadow book earned its way into production.

Over the hours the challenger's shadow book and the traded champion both settled
(`trader.shadow.compare`), d is each UTC day's return of the challenger less the champion's.
After at least publish.challenger.min_hours such hours, with one-sided bounds of d's mean at
publish.challenger.confidence (Student's t over the days: a day's hours share positions, so
days, not hours, are the independent draws):

- **promote** when the lower bound is at least -max_daily_shortfall: the challenger did not
  do worse than the champion by more than the margin, as sure as the confidence says;
- **reject** when the upper bound is below -max_daily_shortfall: it did worse, and that is as
  sure;
- else **shadow** on: the hours cannot tell yet.

The decision's evidence (both books' figures, the interval, the rule's params) is what the
registry records with it (`release.registry.promote_challenger`, `end_challenger`), and the
monitor shows (`monitor.shadow_view`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from klinecast.config import ChallengerParams
from klinecast.trader.shadow import SideBySide

PROMOTE, REJECT, SHADOW = "promote", "reject", "shadow"


@dataclass(frozen=True)
class Decision:
    action: str  # promote | reject | shadow
    reason: str
    evidence: dict


def decide(side: SideBySide | None, params: ChallengerParams) -> Decision:
    """The rule's decision over the side-by-side books (None: no hour settled yet)."""
    if side is None:
        return Decision(SHADOW, "no shadow hour is settled beside a traded one yet", {})
    evidence = evidence_of(side, params)
    hours, days = evidence["hours"], evidence["days"]
    if hours < params.min_hours or days < 2:
        return Decision(
            SHADOW, f"{hours} of the {params.min_hours} shadow hours the rule needs are settled", evidence
        )
    margin, lower, upper = -params.max_daily_shortfall or 0.0, evidence["lower"], evidence["upper"]
    interval = (
        f"the challenger's daily return less the champion's is {evidence['mean_daily_difference']:+.4%} "
        f"over {days} days, {params.confidence:.0%} one-sided bounds [{lower:+.4%}, {upper:+.4%}]"
    )
    if lower >= margin:
        return Decision(PROMOTE, f"{interval}: not worse than {margin:+.4%} a day", evidence)
    if upper < margin:
        return Decision(REJECT, f"{interval}: worse than {margin:+.4%} a day", evidence)
    return Decision(SHADOW, f"{interval}: cannot tell yet against {margin:+.4%} a day", evidence)


def evidence_of(side: SideBySide, params: ChallengerParams) -> dict:
    """Both books' figures over the compared hours and the interval of the mean daily
    difference, as plain JSON (NaN as null)."""
    from scipy import stats

    days = side.daily_difference.to_numpy()
    mean = float(days.mean())
    lower = upper = None  # one day has no spread
    if len(days) > 1:
        spread = float(days.std(ddof=1)) / math.sqrt(len(days))
        reach = float(stats.t.ppf(params.confidence, len(days) - 1)) * spread
        lower, upper = mean - reach, mean + reach
    return {
        "symbol": side.symbol,
        "version": side.version,
        "hours": len(side.hours),
        "days": len(days),
        "first_hour": side.hours[0].isoformat(),
        "last_hour": side.hours[-1].isoformat(),
        "champion": _plain(dataclasses.asdict(side.champion)),
        "challenger": _plain(dataclasses.asdict(side.challenger)),
        "mean_daily_difference": mean,
        "lower": lower,
        "upper": upper,
        "rule": dataclasses.asdict(params),
    }


def _plain(figures: dict) -> dict:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures.items()}
