"""What the transformer refuses beyond a bad request (400), each with its HTTP status.

The server maps each to one JSON answer {"error": ...} and one log line; no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

#: The most characters of a client's value that a refusal repeats.
SHOWN = 64


def shown(value: object) -> str:
    """A client's value as a refusal repeats it: cut after SHOWN characters, saying so."""
    text = str(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


class ServingError(Exception):
    status = 500
    #: headers of the refusal (Retry-After)
    headers: dict[str, str] | None = None

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


@dataclass(frozen=True)
class Absence:
    """Why a model is not loaded: transient (its storage unreachable, an unreadable artifact:
    answered 503, retry later) or not (no production version: answered 404)."""

    reason: str
    transient: bool

    @classmethod
    def of(cls, exc: Exception) -> Absence:
        from klinecast.release.registry import NoProductionVersion

        return cls(str(exc), transient=not isinstance(exc, NoProductionVersion))


class ModelMissing(ServingError):
    """A symbol this service serves whose model is not loaded: no production version (its
    gate refused it). The other symbols are served."""

    status = 404

    def __init__(self, symbol: str, reason: str):
        super().__init__(f"symbol {symbol!r} has no model loaded here: {reason}")


class ModelUnavailable(ServingError):
    """A model that could not be loaded for now (its storage unreachable): retry later."""

    status = 503

    def __init__(self, what: str, reason: str, *, retry_after_s: float):
        super().__init__(f"{what} is not loaded yet: {reason}; retry later")
        self.headers = {"Retry-After": str(max(1, round(retry_after_s)))}


class VersionNotServed(ServingError):
    """A request names a version of a model that is not (or no longer) loaded."""

    status = 404

    def __init__(self, model: str, version: str, served: list[str]):
        super().__init__(
            f"model {model} has no version {shown(version)!r}; it serves {served} (or leave "
            "the version out)"
        )


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
