"""The names of the cluster's Secrets and ConfigMaps and of their keys, in one place: the
manifests, the pipelines and Katib's trials all refer to them through here.

A Secret template (in manifests/base) lists its keys and holds no values; `kubectl create
secret` fills them (docs/deploying.md).
"""

from __future__ import annotations

from klinecast import environment

#: S3 (the model registry, the DVC remote, the Feast registry): boto3's own variable names.
S3_SECRET = "klinecast-s3"
S3_KEYS = environment.AWS_KEYS
#: Optional in the same Secret: the endpoint of a MinIO (AWS S3 needs none).
S3_ENDPOINT_KEY = environment.AWS_ENDPOINT_URL

#: PostgreSQL URLs: the shared Optuna study (pipeline, Katib) and the trader's ledger.
POSTGRES_SECRET = "klinecast-postgres"
POSTGRES_KEYS = {"optuna": "optuna-url", "ledger": "ledger-url"}

#: The Binance spot testnet keys, under the variable names the trader reads.
BINANCE_SECRET = "klinecast-binance"
BINANCE_KEYS = (environment.BINANCE_API_KEY, environment.BINANCE_API_SECRET)

#: Where the online store is, for the transformer and the sync: params' online.* overrides.
ONLINE_CONFIG_MAP = "klinecast-online"
ONLINE_KEYS = tuple(
    variable
    for variable, key in environment.PARAMS_OVERRIDES.items()
    if key in ("online.redis", "online.registry", "online.project")
) + (environment.FEAST_S3_ENDPOINT_URL,)
