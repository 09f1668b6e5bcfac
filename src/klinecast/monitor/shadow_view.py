"""The monitor's look at a symbol's challenger: its shadow book beside the traded champion
(return after costs, hit rate, position changes, drawdown, and both equity curves), what the
promotion rule says now, and the registry's last decision about a challenger with its
evidence. On the page, in monitor.json and as Prometheus gauges."""

from __future__ import annotations

import html
from dataclasses import dataclass

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.monitor import promotion_rule
from klinecast.release import registry
from klinecast.trader.shadow import SideBySide, compare

#: The registry's actions about a challenger (rollbacks and operators' promotions aside).
CHALLENGER_ACTIONS = ("challenge", "promote", "reject")


@dataclass(frozen=True)
class ShadowView:
    side: SideBySide | None  # the newest shadow book beside the champion (None: no shadow hour)
    rule: promotion_rule.Decision  # what the promotion rule says over it now
    #: the registry's newest decision about a challenger, or why it could not be read
    recorded: dict | None
    registry_note: str = ""

    def as_dict(self) -> dict:
        return {
            "rule": {"action": self.rule.action, "reason": self.rule.reason},
            "evidence": self.rule.evidence,
            "recorded": self.recorded,
            "registry_note": self.registry_note,
        }


def shadow_view(params: Params, ledger, *, model_name: str) -> ShadowView | None:
    """The symbol's (params' one symbol) shadow view; None when it never had a shadow book.

    Raises:
        LedgerError: the ledger is unavailable.
    """
    side = compare(ledger, params.data.symbol)
    if side is None and not ledger.shadow_calls(params.data.symbol):
        return None
    rule = promotion_rule.decide(side, params.publish.challenger)
    recorded, note = None, ""
    try:
        store = registry.open_store(params.publish.registry)
        found = [d for d in registry.decisions(store, model_name) if d["action"] in CHALLENGER_ACTIONS]
        recorded = found[-1] if found else None
    except KlinecastError as exc:  # the page still shows the ledger's side
        note = f"the registry could not be read: {exc}"
    return ShadowView(side, rule, recorded, note)


def summary(view: ShadowView) -> str:
    """The monitor's line about the challenger."""
    evidence = view.rule.evidence
    if not evidence:
        return f"shadow: {view.rule.reason}"
    mine, theirs = evidence["challenger"], evidence["champion"]
    return (
        f"shadow: {evidence['version']} over {evidence['hours']} hours: challenger "
        f"{mine['total_return']:+.2%} vs champion {theirs['total_return']:+.2%}; the rule says "
        f"{view.rule.action}"
    )


def section(view: ShadowView | None) -> str:
    """The page's section: both books side by side, a plot of their equity, the rule's verdict
    and the registry's decision."""
    if view is None:
        return ""
    parts = ["<h2>Champion and challenger</h2>"]
    evidence = view.rule.evidence
    if evidence:
        rows = "".join(
            f"<tr><td>{name}</td><td>{f['total_return']:+.2%}</td>"
            f"<td>{'–' if f['hit_rate'] is None else format(f['hit_rate'], '.1%')}</td>"
            f"<td>{f['changes']}</td><td>{f['max_drawdown']:+.2%}</td></tr>"
            for name, f in (("champion (traded)", evidence["champion"]),
                            (f"challenger {evidence['version']} (shadow)", evidence["challenger"]))
        )  # fmt: skip
        parts.append(
            f"<p>Over {evidence['hours']} hours both settled ({evidence['first_hour']} .. "
            f"{evidence['last_hour']}), after the same costs:</p><table id='shadow'><tr><th>book"
            "</th><th>return</th><th>hit rate</th><th>changes</th><th>drawdown</th></tr>"
            f"{rows}</table>{_plot(view.side)}"
        )
    parts.append(
        f"<p id='rule'>The promotion rule says <b>{view.rule.action}</b>: "
        f"{html.escape(view.rule.reason)}.</p>"
    )
    if view.recorded is not None:
        d = view.recorded
        parts.append(
            f"<p id='decision'>The registry's last decision: <b>{html.escape(d['action'])}</b> "
            f"{html.escape(d['version'])} by {html.escape(d['by'])} at {html.escape(d['at'])}: "
            f"{html.escape(d['reason'])}</p>"
        )
    if view.registry_note:
        parts.append(f"<p>{html.escape(view.registry_note)}</p>")
    return "".join(parts)


def _plot(side: SideBySide | None) -> str:
    if side is None:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from klinecast.pages import img, png

    fig, ax = plt.subplots(figsize=(11, 3.5))
    ax.plot(side.curves.index, side.curves["champion"], label="champion, traded")
    ax.plot(side.curves.index, side.curves["challenger"], label=f"challenger {side.version}, shadow")
    ax.set_ylabel("equity, after costs")
    ax.grid(alpha=0.3)
    ax.legend()
    return img(png(fig))


def gauges(view: ShadowView, *, symbol: str, registry_) -> None:
    """The view as Prometheus gauges in registry_ (a prometheus_client CollectorRegistry)."""
    from prometheus_client import Gauge

    evidence = view.rule.evidence
    if not evidence:
        return
    books = {
        "klinecast_book_return": ("return after costs over the compared hours", "total_return"),
        "klinecast_book_hit_rate": ("share of called hours whose side was right", "hit_rate"),
        "klinecast_book_position_changes": ("position changes over the compared hours", "changes"),
        "klinecast_book_max_drawdown": ("deepest fall of equity from a peak", "max_drawdown"),
    }
    for name, (doc, key) in books.items():
        gauge = Gauge(name, doc, ["symbol", "book"], registry=registry_)
        for book in ("champion", "challenger"):
            value = evidence[book][key]
            gauge.labels(symbol, book).set(float("nan") if value is None else value)
    shadow = {
        "klinecast_shadow_hours": ("hours the shadow book and the champion both settled", "hours"),
        "klinecast_shadow_daily_difference": ("mean daily return, challenger less champion",
                                              "mean_daily_difference"),
        "klinecast_shadow_difference_lower": ("the rule's one-sided lower bound of it", "lower"),
        "klinecast_shadow_difference_upper": ("the rule's one-sided upper bound of it", "upper"),
    }  # fmt: skip
    for name, (doc, key) in shadow.items():
        value = evidence[key]
        Gauge(name, doc, ["symbol"], registry=registry_).labels(symbol).set(
            float("nan") if value is None else value
        )
