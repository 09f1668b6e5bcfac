"""Publishing a trained model: a registry version always, production only past its gate among
the book's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from klinecast.config import PublishParams
from klinecast.release import registry
from klinecast.release.gate import Gate, book_gates, gate


@dataclass(frozen=True)
class Promotion:
    """What publishing did (reports/publish.json)."""

    receipt: registry.PublishReceipt
    gate: Gate

    def as_dict(self) -> dict:
        return self.receipt.as_dict() | {"gate": self.gate.as_dict()}


def book_verdicts(artifacts: Mapping[str, Path], params: PublishParams) -> dict[str, Gate]:
    """Each symbol's gate over its artifact (excess return, p-value, not degenerate) with the
    book's multiplicity condition added: Holm's step-down over every symbol's largest p-value
    (`gate.book_gates`), so that among several symbols with no edge one passes by luck no more
    often than one alone would. A book of one is its own gate at publish.gate_max_p_value.

    Args:
        artifacts: every symbol of the book -> its trained artifact.

    Raises:
        RegistryError: an artifact is incomplete or unreadable (the message names it).
    """
    own = {}
    for symbol, artifact in artifacts.items():
        metadata = registry.read_artifact_metadata(artifact)
        own[symbol] = gate(metadata.metrics, metadata.complexity, params)
    return book_gates(own, params)


def publish_artifact(
    artifact_dir: Path, params: PublishParams, *, model_name: str, verdict: Gate
) -> Promotion:
    """Copies the artifact into params.registry as a version of model_name; production moves
    to it only when the verdict (its gate among the book's, `book_verdicts`) passed.

    Raises:
        RegistryError: the artifact is incomplete or the upload failed; production is untouched.
    """
    receipt = registry.publish(
        artifact_dir,
        store=registry.open_store(params.registry),
        model_name=model_name,
        promote=verdict.passed,
    )
    return Promotion(receipt, verdict)
