"""One service for several symbols: a model per symbol behind one transformer, asked by
tritonclient and kserve's client for one symbol or a batch; a symbol it does not serve is 404,
a stale one 503, and one bad symbol fails the whole batch, naming it.

The servers' clock is fixed at 2022-02-01 00:10 UTC. The store holds BTCUSDT, ETHUSDT and
SOLUSDT up to the candle closed then, and XRPUSDT only up to 2022-01-20 (stale). The service
serves BTCUSDT, ETHUSDT and XRPUSDT, each with its own model; SOLUSDT is in the store but not
served.
"""

import asyncio
import dataclasses
import uuid

import numpy as np
import pandas as pd
import pytest

from klinecast.config import Params
from klinecast.release import registry
from klinecast.research.strategy import StrategyRule
from klinecast.serving import feature_sync, online_store
from klinecast.serving.local import LocalServing
from tests.support.helpers import NAME, free_port, v1, v2
from tests.support.paths import MIRROR
from tests.support.redis_server import drop_project

pytestmark = pytest.mark.integration
CLOCK = "2022-02-01T00:10:00Z"
SERVED = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


@pytest.fixture(scope="module")
def store(redis, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    settings = online_store.StoreSettings(
        redis, str(root / "registry.db"), f"t{uuid.uuid4().hex[:12]}"
    )
    params = Params()
    source = feature_sync.archive_source(str(MIRROR), root / "archives", today=pd.Timestamp(CLOCK).date())
    for symbol, now in [("BTCUSDT", CLOCK), ("ETHUSDT", CLOCK), ("SOLUSDT", CLOCK),
                        ("XRPUSDT", "2022-01-20T00:05:00Z")]:  # fmt: skip
        one = dataclasses.replace(params, data=dataclasses.replace(params.data, symbols=(symbol,)))
        feature_sync.sync(one, settings=settings, source=source, now=pd.Timestamp(now))
    yield settings
    drop_project(redis, settings.project)


@pytest.fixture(scope="module")
def models(artifact, tmp_path_factory):
    """A model per served symbol: the same trees, each with a rule (and so a version) of its own."""
    uris = {}
    for number, symbol in enumerate(SERVED):
        out = tmp_path_factory.mktemp(symbol) / "candidate"
        metadata = registry.read_artifact_metadata(artifact)
        rule = StrategyRule("long_only", entry_band=0.01 * number, exit_band=0.0, min_hold_hours=1)
        candidate = dataclasses.replace(metadata.candidate, rule=rule)
        registry.write_artifact(
            out, _booster(artifact),
            dataclasses.replace(metadata, candidate=candidate, created_at=f"2022-01-0{number + 1}T00:00:00+00:00"),
        )
        uris[symbol] = str(out)
    return uris


def _booster(artifact):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(artifact / registry.MODEL_FILE))
    return booster


@pytest.fixture(scope="module")
def server(store, models, tmp_path_factory):
    storage = ",".join(f"{symbol}={uri}" for symbol, uri in models.items())
    with LocalServing(
        NAME, storage, free_port(), free_port(), log_dir=tmp_path_factory.mktemp("logs"),
        online=store, now=CLOCK,
    ) as local:  # fmt: skip
        yield local


def symbols_v1(*symbols):
    return {"instances": [{"symbol": s} for s in symbols]}


def test_the_predictor_hosts_a_model_per_symbol(server, models):
    import requests

    for symbol in SERVED:
        name = f"{NAME}-{symbol.lower()}"
        answer = requests.get(f"{server.predictor_url}/v2/models/{name}/ready", timeout=10)
        assert answer.status_code == 200, (symbol, answer.text)


def test_a_v1_batch_answers_each_symbol_in_order_with_its_own_model(server, models):
    single = {s: v1(server, symbols_v1(s)).json()["predictions"][0] for s in ("BTCUSDT", "ETHUSDT")}
    batch = v1(server, symbols_v1("ETHUSDT", "BTCUSDT"))
    assert batch.status_code == 200, batch.text
    eth, btc = batch.json()["predictions"]
    assert (eth, btc) == (single["ETHUSDT"], single["BTCUSDT"])
    assert eth["model_version"] != btc["model_version"]  # each symbol's own model
    assert eth["strategy"]["entry_band"] == 0.01 and btc["strategy"]["entry_band"] == 0.0
    assert eth["feature_time"] == btc["feature_time"] == "2022-02-01T00:00:00+00:00"
    again = v1(server, symbols_v1("BTCUSDT", "ETHUSDT", "BTCUSDT")).json()["predictions"]
    assert again == [btc, eth, btc]  # a symbol named twice is answered twice, in place


def test_tritonclient_asks_a_bytes_batch(server):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.transformer_url.removeprefix("http://"))
    for binary in (False, True):
        symbols = triton.InferInput("symbol", [2], "BYTES")
        symbols.set_data_from_numpy(np.array([b"BTCUSDT", b"ETHUSDT"], dtype=object), binary_data=binary)
        result = client.infer(NAME, [symbols])
        probs = result.as_numpy("prob_up")
        assert probs.shape == (2,) and ((0 <= probs) & (probs <= 1)).all()
        assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("direction")]


def test_kserve_client_asks_each_served_symbol_and_a_batch(server):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def ask(symbols):
        tensor = InferInput("symbol", [len(symbols)], "BYTES", list(symbols))
        request = InferRequest(model_name=NAME, infer_inputs=[tensor], request_id="b-1")
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            return await client.infer(server.transformer_url, request, model_name=NAME)
        finally:
            await client.close()

    for symbol in ("BTCUSDT", "ETHUSDT"):
        response = asyncio.run(ask([symbol]))
        assert next(o for o in response.outputs if o.name == "prob_up").shape == [1]
    response = asyncio.run(ask(["BTCUSDT", "ETHUSDT"]))
    versions = next(o for o in response.outputs if o.name == "model_version").data
    assert len(versions) == 2 and versions[0] != versions[1]
    json_batch = v2(server, {"inputs": [{"name": "symbol", "datatype": "BYTES", "shape": [2], "data": ["BTCUSDT", "ETHUSDT"]}]})
    assert json_batch.status_code == 200, json_batch.text


@pytest.mark.parametrize(
    ("symbols", "status", "error"),
    [
        (["SOLUSDT"], 404,
         "symbol 'SOLUSDT' is not served here: this service serves ['BTCUSDT', 'ETHUSDT', 'XRPUSDT']"),
        (["BTCUSDT", "DOGEUSDT"], 404,
         "symbol 'DOGEUSDT' is not served here: this service serves ['BTCUSDT', 'ETHUSDT', 'XRPUSDT']"),
        (["BTCUSDT", "XRPUSDT", "ETHUSDT"], 503,
         "the features of XRPUSDT are stale: the store's newest candle opened at "
         "2022-01-19T23:00:00+00:00, expected 2022-01-31T23:00:00+00:00 by now; run "
         "`klinecast features sync`"),
    ],
)  # fmt: skip
def test_one_bad_symbol_fails_the_whole_batch_naming_it(server, symbols, status, error):
    for response in (
        v1(server, symbols_v1(*symbols)),
        v2(server, {"inputs": [{"name": "symbol", "datatype": "BYTES", "shape": [len(symbols)], "data": symbols}]}),
    ):
        assert response.status_code == status, response.text
        assert response.json() == {"error": error}


def test_candles_need_a_symbol_when_each_symbol_has_its_model(server, window):
    from klinecast.serving.client import v1_request

    response = v1(server, v1_request(window))
    assert response.status_code == 400
    assert response.json()["error"].startswith(
        "this service serves a model per symbol (BTCUSDT, ETHUSDT, XRPUSDT): ask by symbol"
    )
