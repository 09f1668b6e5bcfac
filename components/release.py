"""publish (registry version + production pointer) -> deploy (InferenceService storageUri)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.image import COMPONENT


@dsl.component(**COMPONENT)
def publish(params: Input[Artifact], model: Input[Model], receipt: Output[Artifact]) -> str:
    """Copies the model into publish.registry ($KLINECAST_REGISTRY overrides); returns its URI."""
    import json

    from klinecast.cli import run_stage

    run_stage(
        "publish", "--params", params.path, "--artifact", model.path, "--receipt", receipt.path
    )
    document = json.load(open(receipt.path))
    receipt.metadata.update({"version": document["version"], "promoted": document["promoted"]})
    return document["uri"]


@dsl.component(**COMPONENT)
def deploy(params: Input[Artifact], storage_uri: str, namespace: str):
    """Points the InferenceService at storage_uri; outside a cluster it says so and skips."""
    from klinecast.cli import run_stage

    run_stage(
        "deploy", "--params", params.path, "--storage-uri", storage_uri, "--namespace", namespace
    )
