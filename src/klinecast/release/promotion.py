"""Publishing a trained model: a registry version always, production only past the gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from klinecast.config import PublishParams
from klinecast.release import registry
from klinecast.release.gate import Gate, gate


@dataclass(frozen=True)
class Promotion:
    """What publishing did (reports/publish.json)."""

    receipt: registry.PublishReceipt
    gate: Gate

    def as_dict(self) -> dict:
        return self.receipt.as_dict() | {"gate": self.gate.as_dict()}


def publish_artifact(artifact_dir: Path, params: PublishParams, *, model_name: str) -> Promotion:
    """Copies the artifact into params.registry as a new version of model_name; production
    moves to it only when the gate (excess return, p-value, not degenerate) passes.

    Raises:
        RegistryError: the artifact is incomplete or the upload failed; production is untouched.
    """
    metadata = registry.read_artifact_metadata(artifact_dir)
    verdict = gate(metadata.metrics, metadata.complexity, params)
    receipt = registry.publish(
        artifact_dir,
        store=registry.open_store(params.registry),
        model_name=model_name,
        promote=verdict.passed,
    )
    return Promotion(receipt, verdict)
