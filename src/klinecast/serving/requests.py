"""What a transformer request asks, read from its V1 or V2 body: symbols (their features come
from the online store), or recent raw candles, maybe named by their symbol.

V1: {"instances": [{"symbol": "BTCUSDT"}, ...]}, or candles {"instances": [<candle>, ...]}
with an optional {"symbol": "ETHUSDT"} beside them. V2: one BYTES input `symbol` of shape [n],
or one tensor per candle column with an optional `parameters.symbol`.

Every problem raises kserve's InvalidInput, which the server answers with HTTP 400.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, RequestedOutput

from klinecast.serving import payload as parse
from klinecast.serving.errors import shown
from klinecast.serving.v2_request import answered_outputs

JSON_TYPES = ("application/json", "application/cloudevents+json")
#: The most symbols one request may name (each distinct one costs a store read and a predictor
#: call).
MAX_SYMBOLS = 20
#: The longest symbol accepted (Binance's spot symbols are at most about a dozen characters).
MAX_SYMBOL_LENGTH = 32


@dataclass(frozen=True)
class Asked:
    """One request: how to answer it (protocol, id, outputs) and what it asks for."""

    v2: bool
    request_id: str | None = None
    #: the V2 outputs to answer, in order, each marked binary or not (serving.v2_request)
    outputs: tuple[RequestedOutput, ...] = ()
    #: a request by symbol: its symbols in order (a symbol may come twice); empty for candles
    symbols: tuple[str, ...] = ()
    #: the symbol named beside candles (a replay of that symbol's past hours)
    candles_of: str | None = None
    body: object = None

    def candles(self, *, required: tuple[str, ...]) -> pd.DataFrame:
        """The request's candles as a frame (the columns beyond OHLCV that `required` names
        must be there).

        Raises:
            InvalidInput: the candles are malformed.
        """
        if self.v2:
            return parse.candles_from_v2(self.body.inputs, required=required)
        return parse.candles_from_v1(self.body, required=required)


def read(payload, headers, *, outputs) -> Asked:
    """What payload (kserve's decoded body: a dict for V1, an InferRequest for V2) asks.

    Args:
        outputs: the output names the answer has (a V2 request may ask for some of them).

    Raises:
        InvalidInput: a wrong content type, a malformed symbol or symbol request, too many
            symbols, or an unknown requested output.
    """
    v2 = isinstance(payload, InferRequest)
    if v2:
        parse.requested_outputs(payload, known=outputs)
        wanted = tuple(answered_outputs(payload, list(outputs)))
        symbols = _v2_symbols(payload.inputs)
        named = _v2_parameters_symbol(payload)
        request_id = payload.id
    else:
        _check_content_type(payload, headers)
        wanted, request_id = (), None
        symbols = _v1_symbols(payload)
        named = _v1_candles_symbol(payload)
    if symbols is not None and named is not None:  # a symbol request naming a symbol again
        if any(s != named for s in symbols):
            where = "parameters.symbol" if v2 else "symbol"
            raise InvalidInput(
                f"{where} {named!r} contradicts the symbols asked for, {symbols}: name them "
                "once, in the request's symbol input (V2) or instances (V1)"
            )
        named = None
    if symbols is not None and len(symbols) > MAX_SYMBOLS:
        raise InvalidInput(f"{len(symbols)} symbols in one request; at most {MAX_SYMBOLS}")
    return Asked(
        v2, request_id, wanted, tuple(symbols or ()), candles_of=named, body=payload
    )


def _v1_symbols(payload) -> list[str] | None:
    """The symbols of {"instances": [{"symbol": "BTCUSDT"}, ...]}, or None for candles."""
    if isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        instances = payload["instances"]
        if instances and isinstance(instances[0], dict) and "symbol" in instances[0]:
            if any(not isinstance(i, dict) or set(i) != {"symbol"} for i in instances):
                raise InvalidInput(
                    'a symbol request is {"instances": [{"symbol": "BTCUSDT"}, ...]}: each '
                    "instance holds a symbol and nothing else"
                )
            return [symbol(instance["symbol"]) for instance in instances]
    return None


def _v2_symbols(inputs: list) -> list[str] | None:
    named = [t for t in inputs if getattr(t, "name", None) == "symbol"]
    if not named:
        return None
    if len(inputs) != 1 or named[0].datatype != "BYTES":
        raise InvalidInput("a symbol request has one input: symbol, BYTES, shape [n]")
    data = named[0].data
    if isinstance(data, np.ndarray):
        data = data.ravel().tolist()
    if not isinstance(data, list) or not data:
        raise InvalidInput("input symbol: expected one or more values, e.g. ['BTCUSDT']")
    return [symbol(v) for v in data]


def _v1_candles_symbol(payload) -> str | None:
    """The symbol named beside V1 candles, {"symbol": "ETHUSDT", "instances": [<candles>]}."""
    if isinstance(payload, dict) and "symbol" in payload:
        return symbol(payload["symbol"])
    return None


def _v2_parameters_symbol(request) -> str | None:
    """The symbol named in a V2 request's parameters, {"symbol": "ETHUSDT"}: candles' symbol."""
    parameters = getattr(request, "parameters", None) or {}
    if "symbol" not in parameters:
        return None
    value = parameters["symbol"]
    return symbol(getattr(value, "string_param", value))


def symbol(value) -> str:
    """value, checked to be a symbol: an upper-case pair like BTCUSDT, of ASCII letters and
    digits, at most MAX_SYMBOL_LENGTH long (a longer one is refused before it costs a read,
    and not repeated whole)."""
    if isinstance(value, bytes):  # a BYTES tensor's element
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise InvalidInput(f"symbol: {shown(value)} is not UTF-8 text") from None
    if isinstance(value, str) and len(value) > MAX_SYMBOL_LENGTH:
        raise InvalidInput(
            f"symbol: {len(value)} characters is longer than a pair's {MAX_SYMBOL_LENGTH}: "
            f"got {shown(value)!r}"
        )
    if (
        not isinstance(value, str)
        or not (value.isascii() and value.isalnum())
        or value.upper() != value
    ):
        raise InvalidInput(f"symbol: expected an upper-case pair like BTCUSDT, got {value!r}")
    return value


def _check_content_type(payload, headers) -> None:
    content_type = (headers or {}).get("content-type", "application/json").split(";")[0].strip()
    if isinstance(payload, bytes | str) or (content_type and content_type not in JSON_TYPES):
        raise InvalidInput(f"Content-Type {content_type!r} is not supported; send application/json")
