"""Fail-fast checks of params.yaml against the data, before any long stage starts."""

from __future__ import annotations

import pandas as pd

from klinecast.config import Params
from klinecast.errors import KlinecastError
from klinecast.research.backtest import scored_rows
from klinecast.research.tuning import (
    check_in_sample_span,
    in_sample_rows,
    look_back_shortfall,
    search_params,
)


def problems_with_params(params: Params) -> list[str]:
    """What the dates alone rule out, before any data exists (a pipeline's first step).

    The loader already rejects inverted ranges, unknown keys and unknown feature names.
    """
    problems = []
    split, data = params.split, params.data
    searched = search_params(params).split  # the span before the inner hold-out
    days = searched.in_sample.days
    subject = f"the in-sample span {split.in_sample} has"
    if params.tune.holdout_days:
        subject = (
            f"the in-sample span {split.in_sample} less tune.holdout_days "
            f"({params.tune.holdout_days}) has"
        )
    shortfall = look_back_shortfall(params, days=days, subject=subject)
    if shortfall:
        problems.append(shortfall)
    if split.in_sample_start < data.start:
        problems.append(
            f"split.in_sample_start {split.in_sample_start} is before data.start {data.start}"
        )
    if data.end is not None and split.out_of_sample_end > data.end:
        problems.append(
            f"split.out_of_sample_end {split.out_of_sample_end} is after data.end {data.end}"
        )
    return problems


def problems_with_data(params: Params, features: pd.DataFrame) -> list[str]:
    """Every reason the pipeline would fail late on this data, each with what to change.

    Dates, unknown keys and unknown feature names are caught when params.yaml is loaded; this
    adds what only the data can tell: spans without rows and a look_back longer than the data.
    """
    problems = []
    rows = scored_rows(features)
    if rows.empty:
        return ["the feature file holds no labelled rows; run `make data` and `dvc repro features`"]
    covered = f"the data covers {rows.index[0]:%Y-%m-%d} .. {rows.index[-1]:%Y-%m-%d}"
    missing = [n for n in params.features.indicators if n not in features.columns]
    if missing:
        problems.append(
            f"features.indicators {missing} are not in the feature file; rerun `dvc repro features`"
        )
    try:
        searched = search_params(params)
        check_in_sample_span(in_sample_rows(rows, searched), searched)
    except KlinecastError as exc:
        problems.append(str(exc))
    if not params.split.out_of_sample.holds(rows.index).any():
        problems.append(
            f"the out-of-sample span {params.split.out_of_sample} has no rows; {covered}"
        )
    return problems


def problems(params: Params, features: pd.DataFrame | None = None) -> list[str]:
    """Every problem of params alone, then (given the feature rows) of params with the data."""
    found = problems_with_params(params)
    if features is not None:
        found += problems_with_data(params, features)
    return found
