"""The search space: one trial's draw of every lever (tune.search_space), and the candidate of
one value per lever (an Optuna trial's or a Katib trial's)."""

from __future__ import annotations

import dataclasses
import typing

import optuna

from klinecast.config import SearchSpace
from klinecast.research.model import Candidate


def suggest_params(trial: optuna.Trial, space: SearchSpace) -> Candidate:
    """Draws one point of the search space: the classifier, its window, its horizon and the rule.

    exit_band is capped at the trial's entry_band (the exit level is the nearer one); the
    capped value is what the trial trades and what best_params.json reports.
    """
    values = {}
    for name, kind in search_levers().items():
        bounds = getattr(space, name)
        if name in SearchSpace.CHOICES:
            values[name] = trial.suggest_categorical(name, list(bounds))
        elif kind is int:
            values[name] = trial.suggest_int(name, *bounds, log=name in SearchSpace.LOG_SCALE)
        else:
            values[name] = trial.suggest_float(name, *bounds, log=name in SearchSpace.LOG_SCALE)
    return candidate_of(values)


def capped_exit_band(entry_band: float, exit_band: float) -> float:
    """The exit band a rule trades: at most the entry band (a position is left nearer 0.5
    than it is entered)."""
    return min(entry_band, exit_band)


def search_levers() -> dict[str, type]:
    """Every lever of the search space (tune.search_space's keys) with the type of one value:
    what a Katib trial sets and `klinecast tune-trial` takes as flags."""
    hints = typing.get_type_hints(SearchSpace)
    return {f.name: typing.get_args(hints[f.name])[0] for f in dataclasses.fields(SearchSpace)}


def candidate_of(values: dict) -> Candidate:
    """The candidate of one value per lever (an Optuna or a Katib trial's): the exit band capped
    as tuning does, train_window read as the window's kind.

    Raises:
        ValueError: a lever is missing or a value is out of its rule's range.
    """
    values = dict(values)
    entry, exit_ = values.get("entry_band"), values.get("exit_band")
    if entry is not None and exit_ is not None:
        values["exit_band"] = capped_exit_band(entry, exit_)
    window = values.pop("train_window", None)
    if window is not None:
        if window not in ("sliding", "anchored"):
            raise ValueError(f"train_window: expected sliding or anchored, got {window!r}")
        values["anchored"] = window == "anchored"
    return Candidate.from_dict(values)
