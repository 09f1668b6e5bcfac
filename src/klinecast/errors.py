"""Errors that the CLI reports as one clear line instead of a traceback."""

from __future__ import annotations


class KlinecastError(Exception):
    """Base of every error that means bad input or a failed dependency, not a bug."""


class ParamsError(KlinecastError, ValueError):
    """params.yaml keys that are unknown or invalid: `problems` lists every (key, reason)."""

    def __init__(self, key: str, reason: str, *, more: tuple[tuple[str, str], ...] = ()):
        self.problems = [(key, reason), *more]
        super().__init__("\n".join(f"params: {k}: {r}" for k, r in self.problems))
        self.key = key
        self.reason = reason

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ParamsError:
        (key, reason), *more = problems
        return cls(key, reason, more=tuple(more))


class DownloadError(KlinecastError):
    """An archive could not be fetched after bounded retries."""


class ArchiveNotFoundError(DownloadError):
    """The server answered 404: the archive does not exist (yet)."""


class ChecksumError(KlinecastError):
    """A downloaded archive does not match the sha256 in its .CHECKSUM file."""


class CandleDataError(KlinecastError):
    """An archive's content breaks the candle schema or its rules.

    The message names the file and, where there is one, the 1-based row in the CSV.
    """

    def __init__(self, source: str, reason: str, *, row: int | None = None):
        where = f"{source}, row {row}" if row is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.row = row
        self.reason = reason
