"""Recent raw candles from a V1 or V2 request body -> a validated candle frame; and the V2
outputs a request asks for, which the transformer and the predictor both honour.

Candles come in one of two forms:
- compact: the candle columns as one [n, 9] FP64 tensor `candles`, in the contract's order
  (CANDLE_COLUMNS: open, high, low, close, volume, quote_volume, trades, taker_buy_volume,
  taker_buy_quote_volume), with their open times as a separate INT64 tensor `open_time` [n]
  (V2, JSON or binary tensors); in V1 {"open_time": [...], "instances": [[9 numbers], ...]};
- by column: one 1-D tensor per column (V2), or one object per candle (V1).

Every problem raises kserve's InvalidInput, which the server answers with HTTP 400 and the
message; nothing here may escape as a 500.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput

from klinecast.data.candles import (
    CANDLE_COLUMNS,
    EARLIEST_US,
    LATEST_US,
    TimestampError,
    epoch_micros,
    find_gaps,
    first_off_grid,
    validate_candles,
)
from klinecast.errors import CandleDataError

REQUIRED = ("open_time", "open", "high", "low", "close", "volume")
OPTIONAL = tuple(c for c in CANDLE_COLUMNS if c not in REQUIRED)
MAX_CANDLES = 20_000
#: The compact form's tensor of candle columns, [n, len(CANDLE_COLUMNS)], and its open times.
CANDLES, OPEN_TIME = "candles", "open_time"


def requested_outputs(request, *, known) -> list[str]:
    """The output names a V2 InferRequest asks for ([]: all of them), each one of `known`."""
    names = [o.name for o in (request.request_outputs or [])]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"unknown output(s) {unknown}; this model answers {list(known)}")
    return names


def candles_from_v1(payload: object, *, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """{"instances": [{"open_time": ..., "open": ..., ...}, ...]} -> candle frame.

    `required` adds columns beyond OHLCV that the model's features read (taker_buy_volume).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise InvalidInput(
            'expected a JSON object {"instances": [{"open_time": ..., "open": ...}, ...]}'
        )
    instances = payload["instances"]
    if OPEN_TIME in payload:
        return _compact(payload.get(OPEN_TIME), instances, where="instances")
    _check_count(len(instances))
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise InvalidInput(
                f"instances[{i}] is not an object with named fields (open_time, open, ...); the "
                f'compact form is {{"{OPEN_TIME}": [...], "instances": [[9 numbers], ...]}}'
            )
    columns = {}
    needed = _needed(required)
    for name in REQUIRED + OPTIONAL:
        present = [name in row for row in instances]
        if not any(present):
            if name in needed:
                raise InvalidInput(f"missing column {name!r}; every candle needs {list(needed)}")
            continue
        if not all(present):
            raise InvalidInput(f"instances[{present.index(False)}] lacks {name!r}")
        columns[name] = [row[name] for row in instances]
    return _frame(columns)


def candles_from_v2(inputs: list, *, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """V2 inputs -> candle frame: `open_time` and `candles` [n, 9] (compact), or one 1-D
    tensor per column (named like the candle columns)."""
    tensors = {}
    for tensor in inputs:
        name = getattr(tensor, "name", None)
        if name in tensors:
            raise InvalidInput(f"input {name!r} is given twice")
        tensors[name] = tensor
    if CANDLES in tensors:
        if set(tensors) != {OPEN_TIME, CANDLES}:
            raise InvalidInput(
                f"a compact candle request has two inputs: {OPEN_TIME} (INT64, [n]) and "
                f"{CANDLES} (FP64, [n, {len(CANDLE_COLUMNS)}]); got {sorted(map(str, tensors))}"
            )
        if tensors[CANDLES].datatype != "FP64":
            raise InvalidInput(
                f"input {CANDLES!r}: datatype {tensors[CANDLES].datatype}; send FP64 (a price "
                "rounded to FP32 would change the features)"
            )
        return _compact(_data(tensors[OPEN_TIME]), _data(tensors[CANDLES]), where=CANDLES)
    columns = {
        name: _flatten(_data(tensor), name)
        for name, tensor in tensors.items()
        if name in REQUIRED + OPTIONAL
    }
    needed = _needed(required)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise InvalidInput(
            f"missing input tensor(s) {missing}; send one 1-D tensor per column {list(needed)}, "
            f"or {OPEN_TIME} and {CANDLES} [n, {len(CANDLE_COLUMNS)}]"
        )
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidInput(f"input tensors differ in length: {lengths}")
    _check_count(lengths["open_time"])
    return _frame(columns)


def _data(tensor):
    """A tensor's data: a numpy array (serving.v2_request reads them so) or a list."""
    data = tensor.data
    if data is None and hasattr(tensor, "as_numpy"):  # made by kserve's own reader
        data = tensor.as_numpy()
    if not isinstance(data, list | np.ndarray):
        raise InvalidInput(f"input {tensor.name!r}: expected its data as a list of values")
    return data


def _compact(open_times, rows, *, where: str) -> pd.DataFrame:
    """The compact form: open times [n] and the candle columns [n, 9] -> candle frame."""
    from klinecast.serving.v2_request import from_json

    width = len(CANDLE_COLUMNS)
    if open_times is None:
        raise InvalidInput(f"missing {OPEN_TIME!r}: the candles' open times, one per row")
    times = _flatten(open_times, OPEN_TIME)
    _check_count(len(times))
    if isinstance(rows, list):  # V1 (or V2 JSON read by kserve): check and convert
        rows = from_json(rows, "FP64", [len(rows), width], where=where)
    if rows.ndim != 2 or rows.shape[1] != width:
        raise InvalidInput(
            f"{where}: expected shape [n, {width}] (the columns {', '.join(CANDLE_COLUMNS)}), "
            f"got {list(rows.shape)}"
        )
    if rows.shape[0] != len(times):
        raise InvalidInput(
            f"{OPEN_TIME} has {len(times)} value(s), {where} {rows.shape[0]} row(s)"
        )
    if not np.isfinite(rows).all():
        i, j = np.argwhere(~np.isfinite(rows))[0]
        raise InvalidInput(
            f"candle {i}: {CANDLE_COLUMNS[j]} is {rows[i, j]}, NaN and inf are not prices or "
            "volumes"
        )
    index = pd.DatetimeIndex(_open_times(times), name="open_time")
    columns = {name: np.ascontiguousarray(rows[:, j]) for j, name in enumerate(CANDLE_COLUMNS)}
    columns["trades"] = columns["trades"].astype(np.int64)
    return pd.DataFrame(columns, index=index)


def check_window(candles: pd.DataFrame, *, interval: dt.timedelta, min_history: int) -> None:
    """The window must be strictly increasing, on the interval's grid and at least min_history
    candles long. Gaps (hours an exchange outage left without a candle) are allowed, as in
    training: the newest row must still come out (`klinecast.research.features`)."""
    try:
        validate_candles(candles, source="request")
    except CandleDataError as exc:
        raise InvalidInput(f"candle {exc.row - 1}: {exc.reason}") from None
    i = first_off_grid(candles.index, interval=interval)
    if i is not None:
        raise InvalidInput(
            f"candle {i}: open_time {candles.index[i]} is not on a {interval} boundary"
        )
    if len(candles) < min_history:
        raise InvalidInput(
            f"got {len(candles)} candles; the model needs at least {min_history} "
            f"{interval} candles (min_history) so its features equal training's"
        )


def no_row_reason(candles: pd.DataFrame, *, interval: dt.timedelta) -> str:
    """Why a window of min_history candles yields no row for its newest: a gap too close."""
    gaps = find_gaps(candles.index, interval=interval)
    if not gaps:
        return "the window yields no feature row for its newest candle"
    step = pd.Timedelta(interval)
    last = gaps[-1]
    after = int(np.count_nonzero(candles.index > last.last))
    return (
        f"the newest candle is {after} candle(s) after a gap ({last.missing} missing between "
        f"{last.first - step} and {last.last + step}): too few for the hourly indicators' "
        "windows, which restart after a gap; training has no row there either"
    )


def _needed(required: tuple[str, ...]) -> tuple[str, ...]:
    return REQUIRED + tuple(c for c in required if c not in REQUIRED)


def _check_count(n: int) -> None:
    if n == 0:
        raise InvalidInput("no candles in the request")
    if n > MAX_CANDLES:
        raise InvalidInput(f"{n} candles is more than the {MAX_CANDLES} accepted per request")


def _flatten(data, name: str):
    """A 1-D column's values (shape [n] or [n, 1]): a numpy array or a list."""
    if isinstance(data, np.ndarray):
        if data.ndim == 2 and data.shape[1] == 1:
            return data[:, 0]
        if data.ndim != 1:
            raise InvalidInput(f"input {name!r}: expected a 1-D tensor (shape [n] or [n, 1])")
        return data
    if data and isinstance(data[0], list):
        if any(not isinstance(row, list) or len(row) != 1 for row in data):
            raise InvalidInput(f"input {name!r}: expected a 1-D tensor (shape [n] or [n, 1])")
        return [row[0] for row in data]
    return data


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    index = pd.DatetimeIndex(_open_times(columns.pop("open_time")), name="open_time")
    values = {}
    for name in CANDLE_COLUMNS:
        raw = columns.get(name)
        if raw is None:
            values[name] = np.zeros(len(index))
            continue
        values[name] = _numbers(raw, name)
    frame = pd.DataFrame(values, index=index)
    frame["trades"] = frame["trades"].astype("int64")
    return frame


def _numbers(raw, name: str) -> np.ndarray:
    if isinstance(raw, np.ndarray):  # a typed tensor: its numbers only need to be finite
        if raw.dtype.kind not in "fiu":
            raise InvalidInput(f"input {name!r}: expected numbers (FP64), got {raw.dtype}")
        raw = raw.astype(np.float64)
        if np.isfinite(raw).all():
            return raw
        i = int(np.flatnonzero(~np.isfinite(raw))[0])
        raise InvalidInput(
            f"candle {i}: {name} is {raw[i]}, NaN and inf are not prices or volumes"
        )
    if set(map(type, raw)) <= {int, float}:  # the usual case, checked at C speed
        values = np.asarray(raw, dtype=np.float64)
        if np.isfinite(values).all():
            return values
    for i, value in enumerate(raw):  # find and word the first bad value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"candle {i}: {name} is {value!r}, not a number")
        if not math.isfinite(value):
            raise InvalidInput(
                f"candle {i}: {name} is {value}, NaN and inf are not prices or volumes"
            )
    return np.asarray(raw, dtype=np.float64)


def _open_times(raw) -> pd.DatetimeIndex:
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind in "iu" and len(raw):  # an INT64 tensor: epochs in ms or µs
            try:
                return _utc(epoch_micros(raw.astype(np.int64)))
            except (TimestampError, OverflowError):
                pass  # the loop below words the first bad value
        raw = raw.tolist()
    if set(map(type, raw)) == {int} and max(raw) < 2**63:  # epochs in ms or µs, the usual case
        try:
            return _utc(epoch_micros(np.asarray(raw, dtype=object).astype(np.int64)))
        except TimestampError:
            pass  # the loop below words the first bad value
    micros = [_micros(value, i) for i, value in enumerate(raw)]
    return pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True))


def _utc(micros: np.ndarray) -> pd.DatetimeIndex:
    """Epoch microseconds (checked to lie between 2009 and 2100) as a UTC index in ns."""
    return pd.DatetimeIndex((micros * 1000).view("M8[ns]"), dtype="datetime64[ns, UTC]")


def _micros(value: object, i: int) -> int:
    """One open time (an epoch in ms or µs, or an ISO-8601 string) in microseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return int(epoch_micros(np.array([int(value)]))[0])
        except (TimestampError, OverflowError):
            pass
    elif isinstance(value, str):
        try:
            ts = pd.Timestamp(value)
        except ValueError:
            ts = None
        if ts is not None and ts is not pd.NaT:
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            if EARLIEST_US <= ts.value // 1000 <= LATEST_US:
                return ts.value // 1000
    raise InvalidInput(
        f"candle {i}: open_time {value!r} is not an epoch in ms/µs nor an ISO-8601 time "
        "between 2009 and 2100"
    )
