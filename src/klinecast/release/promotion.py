"""Publishing a trained model: a registry version always; production only past its gate among
the book's, or the challenger first while a production version exists."""

from __future__ import annotations

import dataclasses
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

    @property
    def shadowed(self) -> bool:
        """Whether the version published is the challenger now (in shadow beside production)."""
        shadow = self.receipt.challenger
        return shadow is not None and shadow["version"] == self.receipt.version

    @property
    def outcome(self) -> str:
        """What became of the version, in words."""
        if self.receipt.promoted:
            return "promoted to production"
        if self.shadowed:
            return "the challenger, in shadow beside production"
        return "NOT promoted (gate failed)"

    def as_dict(self) -> dict:
        found = self.receipt.as_dict() | {"gate": self.gate.as_dict()}
        if self.shadowed:
            found["shadow"] = SHADOW_LOOK
        return found


#: What the receipt of a version named the challenger says of its shadow hours.
SHADOW_LOOK = (
    "in shadow beside production until `klinecast challenger decide`: its shadow hours are one "
    "more look at data no model saw, and the decision records them as a look"
)


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
    """Copies the artifact into params.registry as a version of model_name. A verdict that
    passed (its gate among the book's, `book_verdicts`) moves production to it, or, while a
    production version exists and publish.challenger.shadow_passed holds, names it the
    challenger instead; one its gate refused is named the challenger only by
    publish.challenger.shadow_refused (beside a production version).

    Raises:
        RegistryError: the artifact is incomplete or the upload failed; production is untouched.
    """
    store = registry.open_store(params.registry)
    champion = registry.production(store, model_name) is not None
    shadow = params.challenger
    promote = verdict.passed and not (champion and shadow.shadow_passed)
    challenge = ""
    if verdict.passed and not promote:
        challenge = "passed its gate; shadows production before a promotion"
    elif not verdict.passed and champion and shadow.shadow_refused:
        challenge = "refused by its gate; shadowed for live evidence (publish.challenger.shadow_refused)"
    receipt = registry.publish(
        artifact_dir, store=store, model_name=model_name, promote=promote, challenge=challenge
    )
    if verdict.passed and (receipt.production or {}).get("version") == receipt.version:
        receipt = dataclasses.replace(receipt, promoted=True)  # production's bytes again
    return Promotion(receipt, verdict)
