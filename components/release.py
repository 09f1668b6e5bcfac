"""publish (registry version + production pointer) -> deploy (InferenceService storageUri)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.image import COMPONENT


@dsl.component(**COMPONENT)
def publish(params: Input[Artifact], model: Input[Model], receipt: Output[Artifact]) -> str:
    """Copies the model into publish.registry ($KLINECAST_REGISTRY overrides); returns its URI."""
    import json
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.release.promotion import publish_artifact

    promotion = publish_artifact(Path(model.path), load_params(params.path).publish)
    Path(receipt.path).write_text(json.dumps(promotion.as_dict(), indent=2))
    receipt.metadata.update(
        {"version": promotion.receipt.version, "promoted": promotion.receipt.promoted}
    )
    return promotion.receipt.uri


@dsl.component(**COMPONENT)
def deploy(params: Input[Artifact], storage_uri: str, namespace: str):
    """Points the InferenceService at storage_uri; outside a cluster it says so and skips."""
    from klinecast.config import load_params
    from klinecast.platform.deploy import NO_CLUSTER, deploy_where_possible

    name = load_params(params.path).publish.model_name
    result = deploy_where_possible(name=name, namespace=namespace, storage_uri=storage_uri)
    print(f"deploy: {result or NO_CLUSTER}; {namespace}/{name} -> {storage_uri}")
