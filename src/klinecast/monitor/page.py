"""The monitor's page (monitor.html): equity against buy-and-hold, rolling accuracy, the
challenger's shadow book, drift."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from klinecast.monitor.health import Decision, Health, Trading
from klinecast.monitor.shadow_view import ShadowView, section
from klinecast.pages import img, png


def render(
    state: Health, outcomes: pd.DataFrame, decision: Decision, trading: Trading | None = None,
    shadow: ShadowView | None = None,
) -> str:  # fmt: skip
    """The live monitoring page: equity against buy-and-hold, rolling accuracy, the champion
    beside its challenger's shadow book, drift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = ""
    if len(outcomes):
        hours = pd.to_datetime(outcomes["hour"], utc=True)
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
        top.plot(hours, np.cumprod(1 + outcomes["strategy_return"]), label="model, after fees")
        top.plot(hours, np.cumprod(1 + outcomes["market_return"]), label="buy and hold")
        top.set_ylabel("equity")
        top.legend()
        trades = outcomes[outcomes["target"] != 0]
        rolling = trades["correct"].astype(float).rolling(state.window, min_periods=1).mean()
        bottom.plot(pd.to_datetime(trades["hour"], utc=True), rolling)
        bottom.axhline(0.5, color="grey", lw=0.8)
        bottom.set_ylabel(f"accuracy, last {state.window} trades")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        plots = img(png(fig))
    drift = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in state.drift.items()
    )
    accuracy = "–" if state.accuracy is None else f"{state.accuracy:.0%}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>klinecast live</title></head>"
        f"<body><h1>klinecast live</h1><p>{state.trades} trades; accuracy of the last "
        f"{state.window}: {accuracy}; equity {state.equity:.4f} vs buy and hold "
        f"{state.buy_and_hold:.4f}. Retrain: <b>{'yes' if decision.retrain else 'no'}</b>"
        f" ({html.escape(decision.reason)}).</p>{_trading(trading)}{plots}{section(shadow)}"
        "<h2>Feature drift (PSI, live vs training window)</h2>"
        f"<p>{html.escape(state.drift_note)}</p>"
        + (f"<table><tr><th>feature</th><th>PSI</th></tr>{drift}</table>" if drift else "")
        + "</body></html>"
    )


def _trading(trading: Trading | None) -> str:
    """The trader's safety first: halts, stuck orders and differences with the exchange."""
    if trading is None:
        return ""
    style = "background:#fde8e8;border-left:4px solid #a11" if trading.alarm else "color:#17692b"
    return f"<p style='padding:0.4em 1em;{style}'>Trading: {html.escape(trading.summary)}</p>"
