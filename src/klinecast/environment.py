"""Every environment variable klinecast reads or sets, by name, in one place.

Deployments set them from ConfigMaps and Secrets (`klinecast.platform.names` maps each Secret key
to its variable), so a password never sits in params.yaml or on a command line.
"""

from __future__ import annotations

#: Variables that override one params.yaml key each, applied once when params are loaded.
PARAMS_OVERRIDES = {
    "KLINECAST_BASE_URL": "data.base_url",
    "KLINECAST_OPTUNA_STORAGE": "tune.storage",
    "KLINECAST_REGISTRY": "publish.registry",
    "KLINECAST_REDIS": "online.redis",
    "KLINECAST_FEAST_REGISTRY": "online.registry",
    "KLINECAST_FEAST_PROJECT": "online.project",
    "KLINECAST_BROKER": "trade.broker",
    "KLINECAST_INFERENCE_URL": "trade.inference_url",
    "KLINECAST_CHALLENGER_URL": "trade.challenger_url",
    "KLINECAST_LEDGER_URL": "trade.ledger",
}

#: Binance REST's base URL (a testnet, or a local stand-in in tests); unset: Binance's own.
BINANCE_URL = "KLINECAST_BINANCE_URL"
#: The Binance spot testnet keys the trader signs its orders with.
BINANCE_API_KEY = "BINANCE_API_KEY"
BINANCE_API_SECRET = "BINANCE_API_SECRET"

#: The image CI builds for the commit: `klinecast pipeline compile|submit` puts it in every task.
PIPELINE_IMAGE = "KLINECAST_PIPELINE_IMAGE"
#: Why a local retrain command was started (the monitor sets it for the command).
RETRAIN_REASON = "KLINECAST_RETRAIN_REASON"
#: Which symbol's model decayed (set with the reason).
RETRAIN_SYMBOL = "KLINECAST_RETRAIN_SYMBOL"
#: GitLab's pipeline trigger token (the monitor's gitlab: retrain target).
GITLAB_TRIGGER_TOKEN = "GITLAB_TRIGGER_TOKEN"
#: The book's models, SYMBOL=URI[,SYMBOL=URI...] (`klinecast.book.storage_string`): what both
#: model servers of the InferenceService load, and what `klinecast deploy` patches.
MODELS = "KLINECAST_MODELS"

#: S3 (the registry, the DVC remote, the Feast registry): boto3's own variable names.
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: A MinIO or another S3 API's endpoint (AWS S3 needs none), as boto3 reads it.
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
#: Feast's own variable for the endpoint of an s3:// registry.
FEAST_S3_ENDPOINT_URL = "FEAST_S3_ENDPOINT_URL"

#: Where a process finds the Kubernetes API: in a pod, else a kubeconfig file.
KUBERNETES_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"
KUBECONFIG = "KUBECONFIG"
#: Who runs a command (a rollback's decision names them unless --by does).
USER = "USER"
#: GitLab CI's short commit sha, in a run's default name.
CI_COMMIT_SHORT_SHA = "CI_COMMIT_SHORT_SHA"


def variable_of(key: str) -> str:
    """The environment variable that overrides a dotted params key (PARAMS_OVERRIDES)."""
    (variable,) = [v for v, k in PARAMS_OVERRIDES.items() if k == key]
    return variable
