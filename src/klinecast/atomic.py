"""Writes that never leave a half-written file: write beside the target, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls write(tmp) on a temporary path in path's directory, then renames it onto path.

    If write raises, the temporary file is removed and whatever was at path stays intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal rights
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_partial(path: Path) -> bool:
    """Whether path is a write still in progress (atomic_write's temporary file)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".part")


def write_bytes(path: Path, content: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(content))


def write_json(path: Path, payload: object) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, engine="pyarrow"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
