"""`klinecast report`: one self-contained HTML page for a quant who has two minutes.

From the top: the verdict (returns after costs, the declared baselines beaten, the largest of
their p-values, the probabilistic and deflated Sharpe ratios, how often the span was looked at,
the gate's conditions and any warning), the gate's baseline table, returns before and after
costs side by side for the model and every baseline, the bridge from before costs to after, a
per-year table, equity and position over time, a monthly returns heatmap, the calibration
curve, the per-fold table, in-sample against out-of-sample, the tuning history, feature
importance, and the model's metadata. Plots are inlined PNG, so the page needs nothing outside
the file.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from klinecast.config import NO_PRIMARY
from klinecast.errors import KlinecastError
from klinecast.pages import REPORT_STYLE, img, png
from klinecast.release.metadata import ArtifactMetadata
from klinecast.research.evaluation import equity_curves
from klinecast.research.model import LINEAR, feature_importance
from klinecast.research.scorecard import (
    CalibrationBin,
    FoldReturns,
    Metrics,
    MonthReturns,
    Scorecard,
)

ROLLING_HOURS = 24 * 7


@dataclass(frozen=True)
class ReportInputs:
    predictions: pd.DataFrame  # evaluate's per-hour frame
    metrics: Scorecard  # metrics.json
    trials: pd.DataFrame | None  # tune's trials.csv
    importance: dict[str, float]  # feature -> share of the gain
    metadata: ArtifactMetadata
    publish: dict | None  # publish's receipt
    #: where the symbol's in-sample rows start (tune's best_params.json, `tuning.data_span`)
    data_span: dict | None = None

    @classmethod
    def read(
        cls,
        *,
        predictions: Path,
        metrics: Path,
        trials: Path | None,
        artifact: Path,
        receipt: Path | None = None,
    ) -> ReportInputs:
        """What the stages wrote: evaluate's predictions and metrics, tune's trials (optional),
        train's artifact and publish's receipt (optional, absent before publishing).

        Raises:
            KlinecastError: a required file is missing or unreadable.
        """
        import xgboost as xgb

        from klinecast.release import registry

        metadata = registry.read_artifact_metadata(artifact)
        booster = xgb.Booster()
        booster.load_model(str(Path(artifact) / registry.MODEL_FILE))
        return cls(
            predictions=_read(predictions, pd.read_parquet),
            metrics=Scorecard.read(metrics),
            trials=pd.read_csv(trials) if trials is not None and trials.is_file() else None,
            importance=feature_importance(booster, list(metadata.feature_names)),
            metadata=metadata,
            publish=json.loads(receipt.read_text()) if receipt and receipt.is_file() else None,
            data_span=_data_span(trials),
        )


def _data_span(trials: Path | None) -> dict | None:
    """tune's record of where the rows start, from best_params.json beside trials.csv."""
    best = Path(trials).with_name("best_params.json") if trials is not None else None
    if best is None or not best.is_file():
        return None
    try:
        return json.loads(best.read_text()).get("data") or None
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _later_start(span: dict | None) -> str:
    """A line when the symbol's rows start after split.in_sample_start."""
    if not span or not span.get("starts_later"):
        return ""
    return (
        f"<p class='warn'>{html.escape(str(span.get('symbol')))}'s rows start "
        f"{html.escape(str(span.get('first_usable_hour')))[:16].replace('T', ' ')}, after "
        f"split.in_sample_start {html.escape(str(span.get('in_sample_start')))} (listed later, "
        "or its features' warm-up): it was tuned and trained from its first usable hour.</p>"
    )


def _pooled(span: dict | None) -> str:
    """A line when the model is the pooled one (tune.pooling: pooled)."""
    if not span or not span.get("pooled"):
        return ""
    symbols = ", ".join(html.escape(str(s)) for s in span["pooled"])
    return (
        f"<p class='note'>A pooled model: one booster fitted on the rows of {symbols}, traded "
        f"here by {html.escape(str(span.get('symbol')))}'s copy of the rule. Its study maximised "
        "the book's objective, so the in-sample column is the book's (the symbols at their "
        "weights); the out-of-sample column is this symbol's own.</p>"
    )


def _read(path: Path, reader):
    try:
        return reader(Path(path))
    except FileNotFoundError:
        raise KlinecastError(f"{path} does not exist; run the stage that writes it first") from None
    except Exception as exc:  # pyarrow and json raise several unrelated types for a bad file
        raise KlinecastError(f"{path} is not readable: {exc}") from None


def render(inputs: ReportInputs) -> str:
    """The report as an HTML string with the plots inlined as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    metrics, predictions = inputs.metrics, inputs.predictions
    sections = [
        _verdict(metrics, inputs.publish),
        "<h2>The gate's baselines</h2>" + _gate_table(metrics),
        "<h2>Before and after costs, out of sample</h2>" + _returns_table(metrics),
        "<h2>From before costs to after</h2>" + _bridge_table(metrics),
        "<h2>Year by year</h2>" + _year_table(metrics),
        "<h2>Equity after fees, and the model's position</h2>" + img(_equity_plot(predictions)),
        "<h2>Monthly returns after fees</h2>" + img(_monthly_heatmap(metrics.per_month)),
        "<h2>Calibration</h2>" + _calibration_section(metrics.calibration),
        "<h2>Walk-forward folds</h2>" + _fold_table(metrics.per_fold),
        "<h2>In sample against out of sample</h2>" + _in_vs_out_table(metrics),
    ]
    if inputs.trials is not None and not inputs.trials.empty:
        sections.append("<h2>Tuning history</h2>" + img(_tuning_plot(inputs.trials)))
    linear = inputs.metadata.candidate.hp.booster == LINEAR
    measure = "the size of each weight on standardised features" if linear else "gain"
    sections.append(
        f"<h2>Feature importance ({measure})</h2>"
        + img(_importance_plot(inputs.importance, linear=linear))
    )
    sections.append("<h2>Model</h2>" + _model_table(inputs.metadata))
    span = metrics.span
    title = f"klinecast report: {html.escape(inputs.metadata.model_name)}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
{REPORT_STYLE}</head><body>
<h1>{title}</h1>
<p>Out of sample: {_day(span.first_hour)} .. {_day(span.last_hour)} ({span.hours:,} hours,
{span.folds} walk-forward folds, retrained every step{_skipped(span)}), fee
{metrics.fee_per_side:.2%} and slippage {metrics.slippage_per_side:.2%} per side on every
change of position.</p>
{_later_start(inputs.data_span)}{_pooled(inputs.data_span)}
{"".join(sections)}
</body></html>
"""


def _skipped(span) -> str:
    if not span.skipped_hours:
        return ""
    return f"; {span.skipped_hours:,} hours in folds skipped for want of training rows, held flat"


def _gate_table(metrics: Scorecard) -> str:
    significance = metrics.significance
    rows = [
        (
            name,
            [
                _pct(test.excess_return),
                f"{test.p_value:.3f} ± {test.mc_error:.3f}",
                f"{test.psr:.2f}",
                f"{metrics.baselines[name].sharpe:.2f}",
            ],
            "",
        )
        for name, test in significance.declared.items()
    ]
    note = (
        f"<p>The baselines a {significance.side.replace('_', '-')} rule could hold, declared "
        "before the evaluation. p: one-sided, the model does not beat the baseline (stationary "
        "bootstrap of the hourly differences, ± its Monte-Carlo error); the gate passes only if "
        "the largest is small (an intersection-union test: no correction is needed). PSR: the "
        "probability that the true Sharpe ratio of the model's hourly excess over the baseline "
        "is above 0.</p>"
    )
    header = ["baseline", "excess after costs", "p-value", "PSR of the excess", "its Sharpe"]
    return _table(header, rows) + note


def _bridge_table(metrics: Scorecard) -> str:
    def cells(m: Metrics) -> list[str]:
        return [
            _pct(m.return_before_fees),
            f"−{m.fees_paid:.2%}",
            f"−{m.slippage_paid:.2%}",
            _pct(m.cumulative_return),
            f"{m.turnover:,.1f}",
        ]

    rows = [("model", cells(metrics.model), "model")]
    rows += [(n, cells(m), "") for n, m in metrics.baselines.items()]
    header = ["strategy", "before costs", "fees", "slippage", "after costs", "turnover"]
    note = (
        "<p>Fees and slippage: their rate times the turnover (the sum of position changes), as "
        "a share of capital; the returns compound, so the columns do not add up exactly.</p>"
    )
    return _table(header, rows) + note


def _year_table(metrics: Scorecard) -> str:
    if not metrics.per_year:
        return "<p>No per-year figures (metrics.json from an older klinecast).</p>"
    years = sorted({y.year for y in metrics.per_year})
    strategies = list(dict.fromkeys(y.strategy for y in metrics.per_year))
    found = {(y.year, y.strategy): y for y in metrics.per_year}
    rows = [
        (
            name,
            [
                f"{_pct(found[year, name].return_after_costs)} / {found[year, name].sharpe:.2f}"
                f" / {found[year, name].changes}"
                for year in years
            ],
            "model" if name == "model" else "",
        )
        for name in strategies
    ]
    return _table(["strategy", *(str(y) for y in years)], rows) + (
        "<p>Each cell: return after costs / Sharpe ratio / position changes.</p>"
    )


def _day(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _pct(value, digits: int = 2) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:+.{digits}%}"


def _verdict(metrics: Scorecard, publish: dict | None) -> str:
    model, significance = metrics.model, metrics.significance
    declared = significance.declared
    beaten = [n for n, t in declared.items() if t.excess_return > 0]
    worst = significance.max_p_baseline
    deflated = significance.deflated_sharpe
    in_sample = (
        f"in sample, its deflated Sharpe ratio is <b>{deflated:.2f}</b> after "
        f"{significance.trials_run} tuning trials (the probability that its Sharpe beats what "
        "the best of that many unskilled trials would show by luck)"
        if deflated is not None
        else "tuning recorded no deflated Sharpe ratio (a study from an older klinecast)"
    )
    sentence = (
        f"The model returned <b>{_pct(model.cumulative_return)}</b> after costs "
        f"({_pct(model.return_before_fees)} before, {model.trades:,} position changes). "
        f"It was declared to beat {len(declared)} baselines a {significance.side.replace('_', '-')} "
        f"rule could hold, and beats <span class='{'pass' if len(beaten) == len(declared) else 'fail'}'>"
        f"{len(beaten)} of them</span>; the largest of their one-sided bootstrap p-values is "
        f"<b>{significance.max_p_value:.3f}</b> ({html.escape(worst)}; SPA, stationary bootstrap, "
        f"{significance.bootstrap_reps:,} resamples, hourly returns after costs). Out of sample "
        f"the probability that its Sharpe ratio is above 0 is "
        f"{significance.probabilistic_sharpe:.2f}; {in_sample}. "
        f"<b>This out-of-sample span has been looked at {significance.span_looks} time(s)</b>: "
        "every look is one more chance to tune to it."
    )
    parts = [f"<p class='verdict'>{sentence}</p>"]
    warnings = []
    if model.trades == 0:
        warnings.append("The model never traded out of sample: there is nothing to judge.")
    if significance.trials_that_trade == 0:
        warnings.append(
            "No tuning trial traded in sample: the search found no rule that pays its fees, "
            "so it chose to stay flat. This is a finding, not an error."
        )
    if publish is not None:
        gate = publish["gate"]
        state = "promoted to production" if publish["promoted"] else "NOT promoted"
        items = "".join(
            f"<li class='{'pass' if c['held'] else 'fail'}'>{html.escape(c['detail'])}</li>"
            for c in gate["conditions"]
        )
        parts.append(
            f"<p>Publish gate: version {html.escape(publish['version'])} was <b>{state}</b>."
            f"</p><ul>{items}</ul>"
        )
        if any(c["name"] == "not_degenerate" and not c["held"] for c in gate["conditions"]):
            warnings.append(
                "The final model is degenerate (see the gate): its trees hold next to nothing, "
                "or its rule does not trade. Do not read its metrics as a signal."
            )
    parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in warnings]
    return "".join(parts)


def _table(header: list[str], rows: list[tuple[str, list[str], str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr class='{cls}'><td>{html.escape(name)}</td>{''.join(f'<td>{c}</td>' for c in cells)}</tr>"
        for name, cells, cls in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _returns_table(metrics: Scorecard) -> str:
    def cells(m: Metrics) -> list[str]:
        accuracy = "–"
        if m.accuracy is not None:
            accuracy = f"{m.accuracy:.1%} [{m.accuracy_low:.1%}, {m.accuracy_high:.1%}]"
        hold = "–" if m.mean_holding_hours is None else f"{m.mean_holding_hours:.1f} h"
        return [
            _pct(m.return_before_fees),
            _pct(m.cumulative_return),
            f"{m.fees_paid:.1%}",
            f"{m.trades:,}",
            f"{m.exposure:.0%}",
            hold,
            accuracy,
            f"{m.sharpe:.2f}",
            f"{m.probabilistic_sharpe:.2f}",
            f"{m.max_drawdown:.1%}",
        ]

    header = [
        "strategy", "before fees", "after fees", "fees paid", "trades", "exposure",
        "mean hold", "hit rate [95 % CI]", "Sharpe", "PSR", "max drawdown",
    ]  # fmt: skip
    rows = [("model", cells(metrics.model), "model")]
    rows += [(name, cells(m), "") for name, m in metrics.baselines.items()]
    note = (
        "<p>Fees paid: the fee times the turnover, as a share of capital. Hit rate: hours in "
        "the market whose next candle moved the position's way, with its Wilson interval. "
        "PSR: the probability that the true Sharpe ratio is above 0.</p>"
    )
    return _table(header, rows) + note


def _calibration_section(table: tuple[CalibrationBin, ...]) -> str:
    if not table:
        return "<p>Too few labelled hours for a calibration curve.</p>"
    return img(_calibration_plot(table)) + (
        "<p>prob_up in deciles: the mean predicted probability against how often the price was "
        "higher after the model's horizon. On the diagonal, the probabilities mean what they "
        "say.</p>"
    )


def _fold_table(folds: tuple[FoldReturns, ...]) -> str:
    baselines = list(folds[0].baselines) if folds else []
    rows = [
        (
            str(f.fold),
            [
                _day(f.first_hour),
                _day(f.last_hour),
                f"{f.hours:,}",
                _pct(f.return_before_fees),
                _pct(f.return_after_fees),
                f"{f.position_changes:,}",
                f"{f.exposure:.0%}",
                *(_pct(f.baselines[name]) for name in baselines),
            ],
            "",
        )
        for f in folds
    ]
    header = [
        "fold", "first hour", "last hour", "hours", "model before fees", "model after fees",
        "position changes", "exposure", *(name.replace("_", " ") for name in baselines),
    ]  # fmt: skip
    return _table(header, rows)


def _in_vs_out_table(metrics: Scorecard) -> str:
    """The chosen trial in the search, on the inner hold-out (which the search never scored)
    and out of sample, side by side."""
    inside, held, out = metrics.in_sample, metrics.holdout, metrics.model
    if not inside:
        return "<p>No in-sample summary (tune's best_params.json predates it).</p>"
    hold = metrics.baselines["buy_and_hold"].cumulative_return

    def number(value, fmt):
        return "–" if value is None else fmt.format(value)

    def cells(key, fmt=None, percent=False):
        def one(values):
            if not values:
                return "–"
            return _pct(values.get(key)) if percent else number(values.get(key), fmt)

        return [one(inside), one(held)] if held else [one(inside)]

    rows = [
        ("hours", [*cells("hours", "{:,.0f}"), f"{out.hours:,}"]),
        ("folds", [*cells("folds", "{:.0f}"), str(metrics.span.folds)]),
        ("return before fees", [*cells("return_before_fees", percent=True), _pct(out.return_before_fees)]),
        ("return after fees", [*cells("return_after_fees", percent=True), _pct(out.cumulative_return)]),
        ("buy and hold after fees", [*cells("buy_and_hold_return", percent=True), _pct(hold)]),
        ("Sharpe (annualised)", [*cells("sharpe", "{:.2f}"), f"{out.sharpe:.2f}"]),
        ("hit rate", [*cells("accuracy", "{:.1%}"), number(out.accuracy, "{:.1%}")]),
        ("classifier accuracy", [*cells("classifier_accuracy", "{:.1%}"), number(out.classifier_accuracy, "{:.1%}")]),
        ("trades", [*cells("trades", "{:,.0f}"), f"{out.trades:,}"]),
        ("exposure", [*cells("exposure", "{:.0%}"), f"{out.exposure:.0%}"]),
    ]  # fmt: skip
    header = ["", "search (chosen trial)", *(["inner hold-out"] if held else []), "out of sample"]
    note = (
        "<p>The search's figures are the best of many trials on the same hours, so they flatter; "
        "the inner hold-out (the in-sample span's last months, which the search never scored) "
        "and the out-of-sample span do not. A large drop is the search fitting noise.</p>"
    )
    return _table(header, [(k, v, "") for k, v in rows]) + note


def _learner_row(hp) -> tuple[str, str]:
    if hp.booster == LINEAR:
        return ("linear", f"{hp.n_estimators:,} rounds of coordinate descent on standardised "
                          f"features, learning rate {hp.learning_rate:.3f}, L1 {hp.reg_alpha:g}, "
                          f"L2 {hp.reg_lambda:g}")  # fmt: skip
    return ("trees", f"{hp.n_estimators:,} rounds, depth ≤ {hp.max_depth}, learning rate "
                     f"{hp.learning_rate:.3f}, subsample {hp.subsample:.2f}, columns "
                     f"{hp.colsample_bytree:.2f}, gamma {hp.gamma}")  # fmt: skip


def _complexity_text(shape, features: int) -> str:
    if shape.booster == LINEAR:
        return f"a weight on {len(shape.features_used)} of {features} features"
    return (f"{shape.splits:,} splits in {shape.trees_that_split:,} of {shape.trees:,} trees, "
            f"over {len(shape.features_used)} of {features} features")  # fmt: skip


def _model_table(metadata: ArtifactMetadata) -> str:
    hp, rule, shape = metadata.candidate.hp, metadata.rule, metadata.complexity
    rows = [
        ("model", metadata.model_name),
        ("created", _day(metadata.created_at) + " UTC"),
        ("symbol, interval", f"{metadata.symbol}, {metadata.interval}"),
        ("trained on", f"{_day(metadata.train_start)} .. {_day(metadata.train_end)} UTC "
                       f"({metadata.train_rows:,} rows)"),
        ("label", f"close {metadata.horizon_hours} h ahead against now"),
        ("rule", f"{rule.side.replace('_', ' ')}; enter beyond 0.5 ± {rule.entry_band:.3f}, "
                 f"leave inside 0.5 ± {rule.exit_band:.3f}; hold at least "
                 f"{rule.min_hold_hours} h"),
        *([("primary", f"{rule.primary} proposes each bet; the model takes or skips it "
                       "(meta-labels), trained on its bets only")]
          if rule.primary != NO_PRIMARY else []),
        _learner_row(hp),
        ("look back", f"{hp.look_back_days} days"),
        ("complexity", _complexity_text(shape, len(metadata.feature_names))),
        ("features used", ", ".join(shape.features_used) or "none"),
        ("data version", ", ".join(f"{k} {str(v)[:12]}" for k, v in metadata.data_version.items())
                         or "–"),
        ("libraries", ", ".join(f"{k} {v}" for k, v in metadata.libraries.items() if v)),
    ]  # fmt: skip
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{body}</table>"


def _equity_plot(predictions: pd.DataFrame) -> bytes:
    import matplotlib.pyplot as plt

    equity = equity_curves(predictions)
    gross = np.cumprod(1 + predictions["position"] * predictions["next_return"])
    fig, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(11, 8.5), sharex=True, height_ratios=[3, 1, 1]
    )
    for name in equity.columns:
        top.plot(equity.index, equity[name], label=name, lw=2.2 if name == "model" else 1)
    top.plot(gross.index, gross, label="model before fees", color="grey", ls="--", lw=1)
    top.set_yscale("log")
    top.set_ylabel("equity (log scale)")
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3)
    middle.fill_between(
        predictions.index, predictions["position"], 0, step="post", color="#4a7bd0", alpha=0.6
    )
    middle.set_yticks([-1, 0, 1], ["short", "flat", "long"])
    middle.set_ylabel("position")
    middle.grid(alpha=0.3)
    drawdown = equity["model"] / equity["model"].cummax().clip(lower=1.0) - 1
    bottom.fill_between(drawdown.index, drawdown, 0, color="#c44", alpha=0.5)
    bottom.set_ylabel("drawdown")
    bottom.grid(alpha=0.3)
    return png(fig)


def _monthly_heatmap(months: tuple[MonthReturns, ...]) -> bytes:
    import matplotlib.pyplot as plt

    frame = pd.DataFrame([m.as_dict() for m in months]).set_index("month")
    values = frame.T.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(min(11, 1.2 + 0.9 * len(frame)), 0.6 * len(frame.columns) + 1))
    limit = max(0.01, float(np.nanmax(np.abs(values))))
    ax.imshow(values, cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(frame)), frame.index, rotation=45, ha="right")
    ax.set_yticks(range(len(frame.columns)), frame.columns)
    for (row, column), value in np.ndenumerate(values):
        ax.text(column, row, f"{value:+.1%}", ha="center", va="center", fontsize=8)
    return png(fig)


def _calibration_plot(table: tuple[CalibrationBin, ...]) -> bytes:
    import matplotlib.pyplot as plt

    predicted = [b.predicted for b in table]
    observed = [b.observed for b in table]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    low = min(predicted + observed) - 0.02
    high = max(predicted + observed) + 0.02
    ax.plot([low, high], [low, high], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.plot(predicted, observed, marker="o", label="model (deciles)")
    ax.set_xlabel("mean predicted prob_up")
    ax.set_ylabel("share that went up")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return png(fig)


def _importance_plot(importance: dict[str, float], *, linear: bool = False) -> bytes:
    import matplotlib.pyplot as plt

    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4a7bd0")
    ax.set_xlabel("share of |weight| x the feature's spread" if linear else "total gain share")
    return png(fig)


def _tuning_plot(trials: pd.DataFrame) -> bytes:
    """Complete trials with the best so far; pruned trials apart, at the value where they
    were stopped (a partial result, not comparable with a complete one)."""
    import matplotlib.pyplot as plt

    complete = trials[trials["state"] == "COMPLETE"]
    pruned = trials[trials["state"] == "PRUNED"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True, height_ratios=[2, 1])
    top.scatter(complete["number"], complete["value"], s=16, label="complete")
    top.plot(complete["number"], complete["value"].cummax(), color="#c44", label="best so far")
    top.set_ylabel("objective, complete")
    top.legend(loc="best")
    top.grid(alpha=0.3)
    if not pruned.empty:
        bottom.scatter(pruned["number"], pruned["value"], s=16, marker="x", color="grey")
    bottom.set_ylabel("pruned: value when stopped")
    bottom.set_xlabel("trial")
    bottom.grid(alpha=0.3)
    return png(fig)


def book_summary(promotions: dict) -> str:
    """A few lines for the KFP UI: each symbol's published version, its gate among the book's
    (`release.promotion.Promotion`s by symbol) and why."""
    rows = "\n".join(
        f"| {symbol} | {p.receipt.version} | {'passed' if p.gate.passed else 'refused'} | "
        f"{'production' if p.receipt.promoted else 'challenger' if p.shadowed else 'not promoted'} |"
        for symbol, p in promotions.items()
    )
    reasons = "\n".join(
        f"- {symbol}: {reason}" for symbol, p in promotions.items() for reason in p.gate.reasons()
    )
    return (
        "### klinecast: the book's gates\n\n"
        "| symbol | version | gate | production |\n|---|---|---|---|\n"
        f"{rows}\n\n{reasons}\n"
    )
