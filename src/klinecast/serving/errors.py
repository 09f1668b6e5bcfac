"""What the transformer refuses beyond a bad request (400), each with its HTTP status.

The server maps each to one JSON answer {"error": ...} and one log line; no traceback.
"""

from __future__ import annotations

import pandas as pd

#: The most characters of a client's value that a refusal repeats.
SHOWN = 64


def shown(value: object) -> str:
    """A client's value as a refusal repeats it: cut after SHOWN characters, saying so."""
    text = str(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


class ServingError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnknownSymbol(ServingError):
    status = 404

    def __init__(self, symbol: str, known: list[str], *, served: bool = False):
        """known: what the online store holds, or (served) the symbols this service serves."""
        if served:
            message = f"symbol {symbol!r} is not served here: this service serves {known}"
        else:
            message = f"unknown symbol {symbol!r}: the online store holds {known or 'no symbol yet'}"
        super().__init__(message)


class ModelMissing(ServingError):
    """A symbol this service serves whose model did not load: no production version (its
    gate refused it), or an artifact that cannot be read. The other symbols are served."""

    status = 404

    def __init__(self, symbol: str, reason: str):
        super().__init__(f"symbol {symbol!r} has no model loaded here: {reason}")


class StaleFeatures(ServingError):
    """The store's newest row is older than the last closed candle plus the tolerance."""

    status = 503

    def __init__(self, symbol: str, *, newest: pd.Timestamp, expected: pd.Timestamp):
        super().__init__(
            f"the features of {symbol} are stale: the store's newest candle opened at "
            f"{newest.isoformat()}, expected {expected.isoformat()} by now; run "
            "`klinecast features sync`"
        )


class StoreUnavailable(ServingError):
    status = 503


class PredictorAnswerError(ServingError):
    """The predictor answered 200 with a body that holds no probability."""

    status = 502

    def __init__(self, reason: str):
        prefix = "the predictor answered malformed JSON: "
        super().__init__(reason if reason.startswith(prefix) else prefix + reason)
