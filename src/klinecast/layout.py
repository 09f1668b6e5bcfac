"""Where the DVC stages keep each symbol's files (dvc.yaml's foreach layout), for the commands
that read them by default: `klinecast serve`, `trade replay`, `monitor` and the benchmarks."""

from __future__ import annotations

from pathlib import Path


def candles(symbol: str) -> Path:
    return Path("data") / symbol / "candles.parquet"


def features(symbol: str) -> Path:
    return Path("data") / symbol / "features.parquet"


def candidate(symbol: str) -> Path:
    """The model artifact `train@<symbol>` writes."""
    return Path("models") / symbol / "candidate"


def reports(symbol: str, root: Path = Path("reports")) -> Path:
    """A symbol's research outputs: metrics, predictions, tune/, publish.json, report.html."""
    return Path(root) / "symbols" / symbol
