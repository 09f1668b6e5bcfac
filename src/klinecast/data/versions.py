"""Versions of data files: what a model and a tuning study record about the data they saw."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's sha256: a version of its content."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def data_version(features: Path, *, dvc_file: Path | None = None) -> dict[str, str]:
    """The hash of the feature file, and the DVC hash of the raw data when dvc_file is given.

    Args:
        dvc_file: the `dvc add` file of the raw data (data.dvc at the repository's root);
            a KFP run has none, and the feature file's hash identifies its data alone.
    """
    version = {"features_sha256": file_digest(features)}
    if dvc_file is not None and dvc_file.is_file():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
        version["raw_md5"] = outs[0].get("md5")
    return version
