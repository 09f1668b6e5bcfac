"""`klinecast report`: one self-contained HTML page to judge a model in a minute."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

ROLLING_HOURS = 24 * 7


@dataclass(frozen=True)
class ReportInputs:
    predictions: pd.DataFrame  # evaluate's per-hour frame
    metrics: dict  # metrics.json
    trials: pd.DataFrame | None  # tune's trials.csv
    importance: dict[str, float]  # feature -> gain
    metadata: dict  # the artifact's metadata.json
    publish: dict | None  # publish's receipt


def render(inputs: ReportInputs) -> str:
    """The report as an HTML string with the plots inlined as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    metrics = inputs.metrics
    sections = [
        _verdict(metrics, inputs.publish),
        "<h2>Out-of-sample metrics</h2>" + _metrics_table(metrics),
        "<h2>Equity after fees</h2>" + _img(_equity_plot(inputs.predictions)),
        "<h2>Rolling directional accuracy</h2>" + _img(_accuracy_plot(inputs.predictions)),
        "<h2>Feature importance (gain)</h2>" + _img(_importance_plot(inputs.importance)),
    ]
    if inputs.trials is not None and not inputs.trials.empty:
        sections.append("<h2>Tuning history</h2>" + _img(_tuning_plot(inputs.trials)))
    sections.append("<h2>Model</h2>" + _model_table(inputs.metadata))
    span = metrics["span"]
    title = f"klinecast report: {html.escape(inputs.metadata.get('model_name', 'model'))}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.model {{ background: #eef4ff; font-weight: bold; }}
.pass {{ color: #17692b; }} .fail {{ color: #a11; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>Out of sample: {span["first_hour"]} .. {span["last_hour"]} ({span["hours"]} hours,
{span["folds"]} walk-forward folds, retrained every step), fee {metrics["fee_per_side"]:.2%} per side.</p>
{"".join(sections)}
</body></html>
"""


def _verdict(metrics: dict, publish: dict | None) -> str:
    model = metrics["model"]["cumulative_return"]
    best_name, best = max(
        ((n, m["cumulative_return"]) for n, m in metrics["baselines"].items()), key=lambda x: x[1]
    )
    beats = model > best
    cls = "pass" if beats else "fail"
    text = (
        f"The model returned <b>{model:+.2%}</b> after fees; the best baseline, {best_name}, "
        f"returned {best:+.2%}. The model <span class='{cls}'>"
        f"{'beats' if beats else 'does not beat'}</span> every naive strategy."
    )
    if publish is not None:
        gate = publish.get("gate", {})
        state = "promoted to production" if publish.get("promoted") else "not promoted"
        text += (
            f" Publish gate ({html.escape(str(gate.get('baseline')))} + "
            f"{gate.get('min_excess_return', 0):+.2%}): version {html.escape(publish['version'])} "
            f"was <b>{state}</b>."
        )
    return f"<p>{text}</p>"


def _metrics_table(metrics: dict) -> str:
    columns = [
        ("cumulative_return", "return", "{:+.2%}"),
        ("annualized_return", "annualised", "{:+.2%}"),
        ("sharpe", "Sharpe", "{:.2f}"),
        ("max_drawdown", "max drawdown", "{:.2%}"),
        ("accuracy", "accuracy", "{:.2%}"),
        ("roc_auc", "ROC AUC", "{:.3f}"),
        ("log_loss", "log-loss", "{:.4f}"),
        ("trades", "trades", "{:d}"),
        ("exposure", "exposure", "{:.0%}"),
    ]
    head = "".join(f"<th>{label}</th>" for _, label, _ in columns)
    rows = [("model", metrics["model"], "model")] + [
        (name, m, "") for name, m in metrics["baselines"].items()
    ]
    body = ""
    for name, values, cls in rows:
        cells = "".join(
            f"<td>{fmt.format(values[key]) if values.get(key) is not None else '–'}</td>"
            for key, _, fmt in columns
        )
        body += f"<tr class='{cls}'><td>{html.escape(name)}</td>{cells}</tr>"
    return f"<table><tr><th>strategy</th>{head}</tr>{body}</table>"


def _model_table(metadata: dict) -> str:
    keys = ("model_name", "created_at", "train_start", "train_end", "train_rows", "data_version")
    rows = "".join(
        f"<tr><td>{k}</td><td>{html.escape(str(metadata.get(k, '')))}</td></tr>" for k in keys
    )
    hp = metadata.get("hyperparams", {})
    rows += "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in hp.items())
    return f"<table>{rows}</table>"


def equity_curves(predictions: pd.DataFrame) -> pd.DataFrame:
    """Equity (starting at 1) of the model and every baseline, hour by hour."""
    columns = {"model": "strategy_return"} | {
        c[: -len("_return")]: c
        for c in predictions.columns
        if c.endswith("_return") and c not in ("strategy_return", "next_return")
    }
    return pd.DataFrame({name: np.cumprod(1 + predictions[c]) for name, c in columns.items()})


def _equity_plot(predictions: pd.DataFrame) -> bytes:
    import matplotlib.pyplot as plt

    equity = equity_curves(predictions)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=[3, 1])
    for name in equity.columns:
        top.plot(equity.index, equity[name], label=name, lw=2.2 if name == "model" else 1)
    top.set_yscale("log")
    top.set_ylabel("equity (log scale)")
    top.legend(loc="best")
    top.grid(alpha=0.3)
    drawdown = equity["model"] / equity["model"].cummax().clip(lower=1.0) - 1
    bottom.fill_between(drawdown.index, drawdown, 0, color="#c44", alpha=0.5)
    bottom.set_ylabel("model drawdown")
    bottom.grid(alpha=0.3)
    return _png(fig)


def _accuracy_plot(predictions: pd.DataFrame) -> bytes:
    import matplotlib.pyplot as plt

    in_market = predictions["position"] != 0
    right = ((predictions["position"] > 0) == (predictions["label"] > 0.5)).where(in_market)
    rolling = right.rolling(ROLLING_HOURS, min_periods=ROLLING_HOURS // 2).mean()
    fig, ax = plt.subplots(figsize=(11, 3.2))
    ax.plot(rolling.index, rolling, label=f"rolling {ROLLING_HOURS} h")
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="coin flip")
    ax.set_ylabel("accuracy")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def _importance_plot(importance: dict[str, float]) -> bytes:
    import matplotlib.pyplot as plt

    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4a7bd0")
    ax.set_xlabel("total gain share")
    return _png(fig)


def _tuning_plot(trials: pd.DataFrame) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.5))
    complete = trials[trials["state"] == "COMPLETE"]
    pruned = trials[trials["state"] == "PRUNED"]
    ax.scatter(complete["number"], complete["value"], s=14, label="complete")
    if not pruned.empty:
        ax.scatter(
            pruned["number"], pruned["value"], s=14, marker="x", color="grey", label="pruned"
        )
    ax.plot(complete["number"], complete["value"].cummax(), color="#c44", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("in-sample return after fees")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _img(png: bytes) -> str:
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def markdown_summary(metrics: dict, gate: dict) -> str:
    """A few lines for the KFP UI: the model against each baseline, and the gate's verdict."""
    span = metrics["span"]
    rows = [("**model**", metrics["model"])] + list(metrics["baselines"].items())
    table = "\n".join(
        f"| {name} | {m['cumulative_return']:+.2%} | {m['sharpe']:.2f} | {m['max_drawdown']:.2%} |"
        for name, m in rows
    )
    verdict = "passed: publish and deploy run" if gate["passed"] else "failed: nothing is published"
    return (
        f"### klinecast out of sample: {span['first_hour'][:10]} .. {span['last_hour'][:10]}\n\n"
        f"{span['hours']} hours, {span['folds']} folds, fee {metrics['fee_per_side']:.2%} per side.\n\n"
        "| strategy | return after fees | Sharpe | max drawdown |\n|---|---|---|---|\n"
        f"{table}\n\n"
        f"Gate (excess over {gate['baseline']} >= {gate['min_excess_return']:+.2%}): "
        f"{gate['excess_return']:+.2%}, {verdict}.\n"
    )


def monitor_page(state: dict, outcomes: pd.DataFrame, decision: dict) -> str:
    """The live monitoring page: equity against buy-and-hold, rolling accuracy, drift."""
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
        rolling = trades["correct"].astype(float).rolling(state["window"], min_periods=1).mean()
        bottom.plot(pd.to_datetime(trades["hour"], utc=True), rolling)
        bottom.axhline(0.5, color="grey", lw=0.8)
        bottom.set_ylabel(f"accuracy, last {state['window']} trades")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        plots = _img(_png(fig))
    drift = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in state["drift"].items()
    )
    accuracy = "–" if state["accuracy"] is None else f"{state['accuracy']:.0%}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>klinecast live</title></head>"
        f"<body><h1>klinecast live</h1><p>{state['trades']} trades; accuracy of the last "
        f"{state['window']}: {accuracy}; equity {state['equity']:.4f} vs buy and hold "
        f"{state['buy_and_hold']:.4f}. Retrain: <b>{'yes' if decision['retrain'] else 'no'}</b>"
        f" ({html.escape(decision['reason'])}).</p>{plots}"
        "<h2>Feature drift (PSI, live vs training window)</h2>"
        f"<p>{html.escape(state['drift_note'])}</p>"
        + (f"<table><tr><th>feature</th><th>PSI</th></tr>{drift}</table>" if drift else "")
        + "</body></html>"
    )
