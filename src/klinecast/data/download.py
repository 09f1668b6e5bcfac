"""Fetching archives over HTTP (or from a local mirror directory) with bounded retries."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from urllib.parse import urlparse

import requests

from klinecast.errors import ArchiveNotFoundError, ChecksumError, DownloadError
from klinecast.retries import GaveUp, Retryable, RetrySettings, call_with_retries

log = logging.getLogger(__name__)

#: HTTP statuses worth another try: the server or a proxy may recover.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


#: The archive download's policy: 4 attempts, 0.5 s, 1 s and 2 s apart, 30 s each.
ARCHIVE_RETRY = RetrySettings(attempts=4, backoff_s=0.5, timeout_s=30.0)


class ArchiveSource:
    """Reads files below a base URL: http(s)://..., file://... or a plain directory path."""

    def __init__(self, base_url: str, *, retry: RetrySettings = ARCHIVE_RETRY):
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        parsed = urlparse(self.base_url)
        if parsed.scheme in ("http", "https"):
            self._local_root = None
            self._session = requests.Session()
        elif parsed.scheme in ("file", ""):
            self._local_root = Path(parsed.path if parsed.scheme == "file" else self.base_url)
            if not self._local_root.is_dir():
                raise DownloadError(f"base URL {base_url!r} is not a directory or an http(s) URL")
            self._session = None
        else:
            raise DownloadError(f"base URL {base_url!r}: unsupported scheme {parsed.scheme!r}")

    def url(self, relpath: str) -> str:
        return f"{self.base_url}/{relpath}"

    def fetch(self, relpath: str) -> bytes:
        """Returns the file's bytes.

        Raises:
            ArchiveNotFoundError: the file does not exist (HTTP 404); not retried.
            DownloadError: every attempt failed with a retryable error.
        """
        if self._local_root is not None:
            try:
                return (self._local_root / relpath).read_bytes()
            except FileNotFoundError:
                raise ArchiveNotFoundError(f"not found: {self.url(relpath)}") from None
        return self._fetch_http(self.url(relpath))

    def _fetch_http(self, url: str) -> bytes:
        try:
            return call_with_retries(lambda: self._get(url), settings=self.retry, what=url, log=log)
        except GaveUp as exc:
            raise DownloadError(
                f"{url}: {exc.reason} (gave up after {exc.attempts} attempt(s))"
            ) from None

    def _get(self, url: str) -> bytes:
        try:
            resp = self._session.get(url, timeout=self.retry.timeout_s)
        except requests.Timeout:
            raise Retryable(f"timed out after {self.retry.timeout_s:g} s") from None
        except requests.RequestException as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code == 200:
            return resp.content
        if resp.status_code == 404:
            raise ArchiveNotFoundError(f"not found (HTTP 404): {url}")
        if resp.status_code in RETRYABLE_STATUS:
            raise Retryable(f"HTTP {resp.status_code}")
        raise DownloadError(f"{url}: HTTP {resp.status_code} (not retried)")


def parse_checksum(text: str, *, filename: str) -> str:
    """Returns the sha256 hex digest from a Binance .CHECKSUM file ("<sha256>  <name>").

    Raises:
        ChecksumError: the file is malformed or names another archive.
    """
    parts = text.split()
    if len(parts) != 2 or len(parts[0]) != 64:
        raise ChecksumError(f"{filename}.CHECKSUM: expected '<sha256>  <name>', got {text[:100]!r}")
    digest, name = parts
    if name != filename:
        raise ChecksumError(f"{filename}.CHECKSUM names another archive: {name!r}")
    try:
        int(digest, 16)
    except ValueError:
        raise ChecksumError(f"{filename}.CHECKSUM: {digest!r} is not a hex sha256") from None
    return digest.lower()


def verify_sha256(content: bytes, *, expected: str, filename: str) -> None:
    """Raises ChecksumError when content's sha256 is not the expected digest."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{filename}: sha256 mismatch: .CHECKSUM says {expected}, the download is {actual}"
        )
