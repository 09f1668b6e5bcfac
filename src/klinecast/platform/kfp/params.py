"""The KFP pipelines' parameters, derived from the typed config.

A pipeline takes one parameter per params.yaml section (`data`, `features`, ... `trade`), each
a JSON object with params.yaml's values as its default, plus a few of its own (`namespace`).
A new key in a section therefore needs no edit in the pipelines or their components, and the KFP UI
shows every section as an editable JSON field of the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import types
import typing
from pathlib import Path

import yaml

from klinecast.config import Params
from klinecast.errors import KlinecastError

SECTIONS = tuple(f.name for f in dataclasses.fields(Params))


def sections_of(params: Params) -> dict[str, dict]:
    """The sections of params as JSON-ready dicts (dates as ISO strings): the pipelines'
    defaults, from Params() (which a test holds equal to params.yaml)."""
    return {name: jsonable(dataclasses.asdict(getattr(params, name))) for name in SECTIONS}


def checked_params_file(sections: dict[str, dict], path: Path | str) -> Params:
    """Writes a run's section parameters as its params.yaml, and loads it strictly: the
    pipeline's first step, which fails the run at once on invalid params.

    Raises:
        ParamsError: a key is unknown or invalid.
        KlinecastError: the dates alone rule the params out (`problems_with_params`).
    """
    from klinecast.config import load_params
    from klinecast.research.validation import problems_with_params

    write_params_file(sections, path)
    params = load_params(path)
    found = problems_with_params(params)
    if found:
        raise KlinecastError("invalid params:\n" + "\n".join(found))
    return params


def write_params_file(sections: dict[str, dict], path: Path | str) -> None:
    """A run's section parameters as its params.yaml (what every component then loads)."""
    from klinecast import atomic

    text = yaml.safe_dump(params_from_sections(sections), sort_keys=False)
    atomic.atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def jsonable(value):
    """What a KFP struct parameter can hold: dates as ISO strings, tuples as lists, and null
    as "" (protobuf's Struct in KFP's compiler takes no None; `params_from_sections` turns ""
    back into null where a key may be empty)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def with_sections(defaults: dict[str, dict], **own: tuple[type, object]):
    """Turns `def pipeline(values: dict)` into the function KFP reads: one dict parameter per
    section with its default, then the pipeline's own parameters, each given as (type, default).

    KFP calls a pipeline function with its parameters in order; the wrapper hands them over
    as one dict by name.
    """

    def decorate(function):
        parameters = [
            inspect.Parameter(name, KIND, annotation=dict, default=value)
            for name, value in defaults.items()
        ] + [
            inspect.Parameter(name, KIND, annotation=kind, default=value)
            for name, (kind, value) in own.items()
        ]
        names = [p.name for p in parameters]

        def pipeline(*args, **kwargs):
            return function(dict(zip(names, args, strict=False)) | kwargs)

        pipeline.__name__, pipeline.__doc__ = function.__name__, function.__doc__
        pipeline.__module__ = function.__module__
        pipeline.__signature__ = inspect.Signature(parameters)
        return pipeline

    return decorate


KIND = inspect.Parameter.POSITIONAL_OR_KEYWORD


def params_from_sections(sections: dict[str, dict]) -> dict:
    """The params.yaml mapping of a run's section parameters.

    KFP carries numbers in JSON objects as doubles; whole numbers become integers again where
    params.yaml wants integers. Anything else is left for the strict loader to judge.
    """
    hints = typing.get_type_hints(Params)
    return {name: _from_kfp(hints[name], sections[name]) for name in SECTIONS if name in sections}


def _from_kfp(hint, value):
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value in (None, ""):
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_kfp(inner[0], value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        fields = typing.get_type_hints(hint)
        return {k: _from_kfp(fields.get(k), v) for k, v in value.items()}
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return [_from_kfp(args[0], item) for item in value]
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def apply_override(sections: dict[str, dict], dotted: str, value) -> None:
    """Sets `section.key` (or `section.key.sub`) in a copy-safe way, e.g. tune.n_trials=80.

    Raises:
        KeyError: the section is not one of params.yaml's.
    """
    section, _, rest = dotted.partition(".")
    if section not in SECTIONS or not rest:
        raise KeyError(dotted)
    node = sections.setdefault(section, {})
    *parents, last = rest.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
