"""A model per symbol as the cluster's InferenceService names them: each symbol's production
version (`<registry>/<model>-<symbol>/versions/PRODUCTION`), looked up by the servers when
they load. XRPUSDT's gate refused its model (a version, no production pointer): the service
still serves BTCUSDT and ETHUSDT, and answers 404 for XRPUSDT, naming it, which the trader
records as no_trade.

The servers' clock is fixed at 2022-02-01 00:10 UTC; the store holds the three symbols up to
the candle closed then.
"""

import datetime as dt

import pytest
import requests

from klinecast.release import registry
from klinecast.serving.local import LocalServing
from tests.support.helpers import NAME, free_port, v1
from tests.support.online import synced_store

pytestmark = pytest.mark.integration
CLOCK = "2022-02-01T00:10:00Z"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")
PROMOTED = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(scope="module")
def store(redis, tmp_path_factory):
    with synced_store(redis, tmp_path_factory.mktemp("store"), dict.fromkeys(SYMBOLS, CLOCK)) as settings:
        yield settings


@pytest.fixture(scope="module")
def published(artifact, tmp_path_factory):
    """The registry: every symbol's model published, only BTCUSDT's and ETHUSDT's promoted."""
    root = tmp_path_factory.mktemp("registry")
    store = registry.LocalStore(root)
    versions = {}
    for number, symbol in enumerate(SYMBOLS):
        receipt = registry.publish(
            artifact, store=store, model_name=f"{NAME}-{symbol.lower()}",
            promote=symbol in PROMOTED, now=dt.datetime(2022, 1, 1 + number, tzinfo=dt.UTC),
        )  # fmt: skip
        versions[symbol] = receipt.version
    return root, versions


def production_uri(root, symbol: str) -> str:
    return f"{root}/{NAME}-{symbol.lower()}/versions/{registry.PRODUCTION_VERSION}"


@pytest.fixture(scope="module")
def server(store, published, tmp_path_factory):
    root, _ = published
    storage = ",".join(f"{symbol}={production_uri(root, symbol)}" for symbol in SYMBOLS)
    with LocalServing(
        NAME, storage, free_port(), free_port(), log_dir=tmp_path_factory.mktemp("logs"),
        online=store, now=CLOCK,
    ) as local:  # fmt: skip
        yield local


def test_the_refused_symbol_is_404_naming_it(server, published):
    root, _ = published
    for symbols in (["XRPUSDT"], ["BTCUSDT", "XRPUSDT"]):
        response = v1(server, {"instances": [{"symbol": s} for s in symbols]})
        assert response.status_code == 404, response.text
        assert response.json() == {
            "error": "symbol 'XRPUSDT' has no model loaded here: no production version of "
            f"{NAME}-xrpusdt in {root}"
        }
    log = (server.log_dir / "transformer.log").read_text()
    assert (
        f"transformer {NAME}: the model of XRPUSDT NOT loaded from {production_uri(root, 'XRPUSDT')}: "
        f"no production version of {NAME}-xrpusdt in {root}; XRPUSDT is answered 404 until it loads"
    ) in log


def test_the_promoted_symbols_are_served_with_their_production_versions(server, published):
    _, versions = published
    response = v1(server, {"instances": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}]})
    assert response.status_code == 200, response.text
    btc, eth = response.json()["predictions"]
    assert (btc["model_version"], eth["model_version"]) == (
        versions["BTCUSDT"],
        versions["ETHUSDT"],
    )
    assert btc["feature_time"] == eth["feature_time"] == "2022-02-01T00:00:00+00:00"


def test_the_predictor_is_ready_without_the_refused_model(server, published):
    root, _ = published
    ready = requests.get(f"{server.predictor_url}/v2/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    for symbol in PROMOTED:
        answer = requests.get(
            f"{server.predictor_url}/v2/models/{NAME}-{symbol.lower()}/ready", timeout=10
        )
        assert answer.status_code == 200, (symbol, answer.text)
    refused = requests.get(f"{server.predictor_url}/v2/models/{NAME}-xrpusdt/ready", timeout=10)
    assert refused.status_code == 503
    assert refused.json() == {"error": f"Model with name {NAME}-xrpusdt is not ready."}
    log = (server.log_dir / "predictor.log").read_text()
    assert (
        f"model {NAME}-xrpusdt NOT loaded from {production_uri(root, 'XRPUSDT')}: "
        f"no production version of {NAME}-xrpusdt in {root}"
    ) in log


def test_a_later_promotion_is_loaded_by_the_next_refresh(artifact, tmp_path):
    """What the servers' background thread calls every poll period: refresh() loads the
    symbol once its model is promoted, with no restart, in the transformer and the predictor."""
    from klinecast.serving.errors import Absence
    from klinecast.serving.predictor import XGBoostPredictor
    from klinecast.serving.transformer import ForecastTransformer

    store = registry.LocalStore(tmp_path)
    registry.publish(artifact, store=store, model_name=f"{NAME}-btcusdt", promote=True)
    storage = ",".join(f"{s}={production_uri(tmp_path, s)}" for s in ("BTCUSDT", "XRPUSDT"))
    transformer = ForecastTransformer(NAME, storage)
    predictor = XGBoostPredictor(f"{NAME}-xrpusdt", production_uri(tmp_path, "XRPUSDT"))
    assert transformer.load() and not predictor.load()
    reason = f"no production version of {NAME}-xrpusdt in {tmp_path}"
    assert transformer.models.missing == {"XRPUSDT": Absence(reason, transient=False)}
    assert predictor.absent == Absence(reason, transient=False)  # a 404, not a retry
    receipt = registry.publish(artifact, store=store, model_name=f"{NAME}-xrpusdt", promote=True)
    transformer.refresh()
    predictor.refresh()
    assert transformer.models.missing == {} and predictor.ready
    assert transformer.models.models["XRPUSDT"].model_version == receipt.version
    assert predictor.model_version == receipt.version


def test_a_refused_symbols_infer_on_the_predictor_is_404_naming_why(server, published):
    root, _ = published
    answer = requests.post(
        f"{server.predictor_url}/v2/models/{NAME}-xrpusdt/infer",
        json={"inputs": [{"name": "features", "shape": [1, 1], "datatype": "FP64", "data": [0.0]}]},
        timeout=10,
    )
    assert answer.status_code == 404, answer.text
    assert answer.json() == {
        "error": f"model {NAME}-xrpusdt has no production version: no production version of "
        f"{NAME}-xrpusdt in {root}"
    }


def test_an_unreachable_registry_is_a_503_with_retry_after_not_a_404(artifact, monkeypatch):
    """A registry on S3 whose endpoint refuses connections (a port nothing listens on): the
    model is not loaded yet, which is a passing fault, answered 503 with Retry-After."""
    from klinecast.serving.errors import ModelUnavailable
    from klinecast.serving.predictor import XGBoostPredictor
    from klinecast.serving.transformer import ForecastTransformer
    from tests.support.helpers import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    unreachable = f"s3://klinecast-models/registry/{NAME}-xrpusdt/versions/PRODUCTION"
    predictor = XGBoostPredictor(f"{NAME}-xrpusdt", unreachable, poll_s=7)
    assert not predictor.load() and predictor.absent.transient
    transformer = ForecastTransformer(NAME, f"BTCUSDT={artifact},XRPUSDT={unreachable}", poll_s=7)
    assert transformer.load()
    with pytest.raises(ModelUnavailable) as refused:
        transformer.models.model_of("XRPUSDT")
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "7"}
    assert refused.value.message.startswith("symbol 'XRPUSDT''s model is not loaded yet: ")
