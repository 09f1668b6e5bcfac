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

import numpy as np
import pandas as pd
import pytest

from klinecast.release import registry
from klinecast.research.strategy import StrategyRule
from klinecast.serving import feature_sync
from klinecast.serving.local import LocalServing
from tests.support.helpers import NAME, free_port, v1, v2
from tests.support.online import synced_store
from tests.support.paths import MIRROR

pytestmark = pytest.mark.integration
CLOCK = "2022-02-01T00:10:00Z"
SERVED = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


@pytest.fixture(scope="module")
def store(redis, tmp_path_factory):
    clocks = {"BTCUSDT": CLOCK, "ETHUSDT": CLOCK, "SOLUSDT": CLOCK, "XRPUSDT": "2022-01-20T00:05:00Z"}
    with synced_store(redis, tmp_path_factory.mktemp("store"), clocks) as settings:
        yield settings


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


def test_named_candles_are_answered_by_that_symbols_model(server, models, window):
    """Past hours (a replay) cannot come from the store: the candles are sent, named."""
    from klinecast.serving.client import v1_request, v2_request

    answers = {}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        one = v1(server, {"symbol": symbol, **v1_request(window)})
        assert one.status_code == 200, one.text
        (answers[symbol],) = one.json()["predictions"]
        other = v2(server, {"parameters": {"symbol": symbol}, **v2_request(window)})
        assert other.status_code == 200, other.text
        outputs = {o["name"]: o["data"][0] for o in other.json()["outputs"]}
        assert outputs["model_version"] == answers[symbol]["model_version"]
        assert outputs["prob_up"] == pytest.approx(answers[symbol]["prob_up"], abs=1e-12)
    eth, btc = answers["ETHUSDT"], answers["BTCUSDT"]
    assert eth["model_version"] != btc["model_version"]
    assert eth["strategy"]["entry_band"] == 0.01 and btc["strategy"]["entry_band"] == 0.0
    expected = (window.index[-1] + pd.Timedelta(hours=1)).isoformat()
    assert eth["feature_time"] == btc["feature_time"] == expected
    refused = v1(server, {"symbol": "SOLUSDT", **v1_request(window)})
    assert refused.status_code == 404
    assert refused.json() == {
        "error": "symbol 'SOLUSDT' is not served here: this service serves "
        "['BTCUSDT', 'ETHUSDT', 'XRPUSDT']"
    }
    bad = v1(server, {"symbol": "eth", **v1_request(window)})
    assert bad.status_code == 400
    assert bad.json() == {"error": "symbol: expected an upper-case pair like BTCUSDT, got 'eth'"}


def test_replay_over_two_symbols_equals_each_ones_backtest(
    server, models, tmp_path, capsys, monkeypatch
):
    """`trade replay` of BTCUSDT and ETHUSDT through the one service: each symbol's ledger
    rows are its own model's offline probabilities, its rule's positions, and its backtest's
    equity after the paper broker's costs."""
    from klinecast.cli import main
    from tests.support.helpers import offline_book, table, write_params

    source = feature_sync.archive_source(
        str(MIRROR), tmp_path / "archives", today=pd.Timestamp("2022-01-01").date()
    )
    candles = {}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        candles[symbol] = source(
            symbol, "1h", pd.Timestamp("2021-01-01", tz="UTC"),
            pd.Timestamp("2021-12-31 23:00", tz="UTC"),
        )  # fmt: skip
        (tmp_path / "data" / symbol).mkdir(parents=True)
        candles[symbol].to_parquet(tmp_path / "data" / symbol / "candles.parquet")
    params = write_params(
        tmp_path / "params.yaml",
        {
            "data": {"symbols": ["BTCUSDT", "ETHUSDT"]},
            "publish": {"service_name": NAME},
            "trade": {"inference_url": server.transformer_url, "request": "symbol"},
        },
    )
    ledger = f"sqlite:///{tmp_path}/replay.db"
    monkeypatch.chdir(tmp_path)  # every traded symbol, each from data/<symbol>/candles.parquet
    argv = ["trade", "replay", "--params", str(params), "--ledger", ledger]
    assert main([*argv, "--start", "2021-12-01", "--end", "2021-12-02"]) == 0
    out = capsys.readouterr().out
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert f"trade replay: {symbol}: 48 hours, 48 traded" in out

    predictions = pd.DataFrame(table(ledger, "predictions"))
    curves = pd.DataFrame(table(ledger, "equity"))
    for symbol in ("BTCUSDT", "ETHUSDT"):
        mine = predictions[predictions["symbol"] == symbol].set_index("hour").sort_index()
        hours = pd.DatetimeIndex(pd.to_datetime(mine.index, utc=True))
        # its own model's probabilities and rule; the book holds on after the last hour
        proba, position, returns = offline_book(candles[symbol], models[symbol], hours)
        np.testing.assert_allclose(mine["prob_up"].to_numpy(), proba, atol=1e-6)
        assert (mine["target"].to_numpy() == position).all()
        curve = curves[curves["symbol"] == symbol].sort_values("hour")["equity"].to_numpy()
        np.testing.assert_allclose(curve, np.cumprod(1.0 + returns), rtol=1e-12)
    # each rule traded: positions changed within the hours, so the book and costs matter
    for symbol in ("BTCUSDT", "ETHUSDT"):
        targets = predictions[predictions["symbol"] == symbol].sort_values("hour")["target"]
        assert np.count_nonzero(np.diff(targets.to_numpy())) >= 2, symbol


def v2_symbols(symbols, **extra) -> dict:
    tensor = {"name": "symbol", "datatype": "BYTES", "shape": [len(symbols)], "data": symbols}
    return {"inputs": [tensor], **extra}


def test_a_book_answers_model_version_names_each_symbols_version(server, models):
    """The versions hold "+00:00" (an artifact's creation time): joined with "+" they could
    not be told apart; SYMBOL=VERSION,... reads back into each symbol's."""
    from klinecast.serving.models import symbol_versions

    answer = v2(server, v2_symbols(["ETHUSDT", "BTCUSDT"]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    per_output = next(o for o in body["outputs"] if o["name"] == "model_version")["data"]
    versions = {s: registry.read_artifact_metadata(models[s]).created_at for s in models}
    assert "+00:00" in versions["ETHUSDT"]
    assert symbol_versions(body["model_version"]) == {
        "ETHUSDT": versions["ETHUSDT"], "BTCUSDT": versions["BTCUSDT"],
    }  # fmt: skip
    assert per_output == [versions["ETHUSDT"], versions["BTCUSDT"]]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        # the cases: a shape that does not hold its data is not answered
        (v2_symbols(["BTCUSDT", "BTCUSDT"]) | {"inputs": [{"name": "symbol", "datatype": "BYTES", "shape": [3], "data": ["BTCUSDT", "BTCUSDT"]}]},
         400, "input 'symbol': shape [3] holds 3 value(s), its data 2"),
        ({"inputs": [{"name": "symbol", "datatype": "BYTES", "shape": [2, 3], "data": ["BTCUSDT"]}]},
         400, "input 'symbol': shape [2, 3] holds 6 value(s), its data 1"),
        (v2_symbols(["BTCUSDT"], parameters={"symbol": "ETHUSDT"}),
         400, "parameters.symbol 'ETHUSDT' contradicts the symbols asked for, ['BTCUSDT']"),
        (v2_symbols(["BTCUSDT"], parameters={"symbol": "eth"}),
         400, "symbol: expected an upper-case pair like BTCUSDT, got 'eth'"),
        (v2_symbols(["B" * 1_000_000]),
         400, "symbol: 1000000 characters is longer than a pair's 32: got 'BBBB"),
    ],
)  # fmt: skip
def test_v2_symbol_requests_are_checked_as_the_protocol_and_the_book_say(server, body, status, error):
    response = v2(server, body)
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(error) or error in response.json()["error"]
    assert len(response.text) < 500  # a megabyte symbol is not echoed back


def test_a_symbol_named_consistently_twice_is_answered(server):
    response = v2(server, v2_symbols(["BTCUSDT"], parameters={"symbol": "BTCUSDT"}))
    assert response.status_code == 200, response.text


def test_each_requested_output_is_answered_once(server):
    body = v2_symbols(["BTCUSDT"], outputs=[{"name": "prob_up"}, {"name": "direction"}, {"name": "prob_up"}])
    response = v2(server, body)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["prob_up", "direction"]


@pytest.mark.parametrize("path", ["ready", "infer", ""])
def test_an_unknown_model_is_named_on_every_path(server, path):
    import requests

    for url in (server.transformer_url, server.predictor_url):
        where = f"{url}/v2/models/nosuch/versions/1" + (f"/{path}" if path else "")
        method = requests.post if path == "infer" else requests.get
        response = method(where, json=v2_symbols(["BTCUSDT"]), timeout=10)
        assert response.status_code == 404, (where, response.text)
        assert response.json() == {"error": "Model with name nosuch does not exist."}
