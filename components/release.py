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
    """Points the InferenceService (publish.model_name of the run's params) at storage_uri;
    outside a cluster it says so and skips.

    With several symbols it patches nothing: the service's model per symbol is not patched by
    the pipeline yet (README: several symbols on a cluster)."""
    from klinecast.config import load_params
    from klinecast.platform.deploy import NO_CLUSTER, deploy_where_possible

    config = load_params(params.path)
    name, symbols = config.publish.model_name, config.data.symbols
    if len(symbols) > 1:
        print(f"deploy: published {storage_uri}; several symbols ({', '.join(symbols)}): the "
              f"per-symbol storage of {name} is not patched by the pipeline")  # fmt: skip
        return
    result = deploy_where_possible(name=name, namespace=namespace, storage_uri=storage_uri)
    print(f"deploy: {result or NO_CLUSTER}; {namespace}/{name} -> {storage_uri}")
