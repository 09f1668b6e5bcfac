import datetime as dt
from pathlib import Path

import pytest
import yaml

from klinecast import config
from klinecast.config import SEED_INDICATORS, Params, load_params, params_from_mapping
from klinecast.errors import ParamsError

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_yaml_loads_with_seed_defaults():
    params = load_params(REPO / "params.yaml")
    assert params.data.symbol == "BTCUSDT" and params.data.interval == "1h"
    assert params.data.start == dt.date(2017, 8, 1) and params.data.end is None
    assert params.features.indicators == SEED_INDICATORS
    assert params.features.min_history == 540
    assert params == Params()  # the dataclass defaults and params.yaml agree


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"dta": {}},
            r"params: dta: unknown key; expected one of \['backtest', 'data', 'features', 'publish', 'split', 'trade', 'tune'\]",
        ),
        ({"data": {"symbl": "X"}}, "params: data.symbl: unknown key"),
        ({"data": {"start": "yesterday"}}, "params: data.start: expected a date like 2018-01-01"),
        ({"data": {"start": "2020-01-01", "end": "2019-01-01"}}, "data.end: 2019-01-01 is before"),
        ({"data": {"interval": "7h"}}, "params: data.interval: expected one of"),
        ({"data": {"symbol": "btc-usdt"}}, "params: data.symbol: expected an upper-case pair"),
        ({"data": {"base_url": 3}}, "params: data.base_url: expected a string, got 3"),
        ({"data": []}, "params: data: expected a mapping, got list"),
        (
            {"features": {"indicators": ["rsi_14", "macd_3"]}},
            "features.indicators: unknown indicator 'macd_3'",
        ),
        ({"features": {"indicators": ["rsi_1"]}}, "the period must be at least 2"),
        ({"features": {"indicators": []}}, "features.indicators: at least one indicator"),
        ({"features": {"indicators": "rsi_14"}}, "features.indicators: expected a list"),
        ({"features": {"indicators": ["rsi_7", "rsi_7"]}}, "lists an indicator twice"),
        (
            {"features": {"min_history": 20}},
            r"features.min_history: 20 is not more than the longest indicator window \(22",
        ),
        (
            {"features": {"min_history": True}},
            "features.min_history: expected an integer, got True",
        ),
    ],
)
def test_bad_params_name_the_key_and_the_reason(raw, message):
    with pytest.raises(ParamsError, match=message):
        params_from_mapping(raw)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_more_indicators_need_no_code_change(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        yaml.safe_dump(
            {"features": {"indicators": ["adx_14", "cci_20", "rsi_30"], "min_history": 800}}
        )
    )
    assert load_params(path).features.indicators == ("adx_14", "cci_20", "rsi_30")


def test_params_are_frozen():
    with pytest.raises(AttributeError):
        Params().data.symbol = "ETHUSDT"


def test_flat_pipeline_parameters_round_trip_params_yaml():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    flat = config.flatten(raw)
    assert flat["tune_n_trials"] == raw["tune"]["n_trials"]
    assert flat["data_end"] == ""  # null travels as "" (a pipeline parameter has one type)
    assert config.unflatten(flat) == raw


def test_unflatten_undoes_kfp_doubles_only_where_integers_are_wanted():
    flat = config.flatten(yaml.safe_load((REPO / "params.yaml").read_text()))
    flat["tune_search_space"]["n_estimators"] = [350.0, 1000.0]
    flat["tune_search_space"]["learning_rate"] = [0.01, 1.0]
    params = config.params_from_mapping(config.unflatten(flat))
    assert params.tune.search_space.n_estimators == (350, 1000)
    assert params.tune.search_space.learning_rate == (0.01, 1.0)
    flat["tune_n_trials"] = 2.5  # not a whole number: the strict loader still says so
    with pytest.raises(ParamsError, match="tune.n_trials: expected an integer"):
        config.params_from_mapping(config.unflatten(flat))
    with pytest.raises(ParamsError, match="does not start with a section"):
        config.unflatten({"nosuch_key": 1})


@pytest.mark.parametrize(
    ("trade", "message"),
    [
        ({"broker": "live"}, "trade.broker: expected paper or testnet"),
        ({"quantity": 0.1, "max_quantity": 0.01}, "trade.quantity: expected 0 < quantity"),
        ({"kill_switch_return": 0.2}, "trade.kill_switch_return: expected"),
        ({"protocol": "grpc"}, "trade.protocol: expected v1 or v2"),
    ],
)
def test_bad_trade_params(trade, message):
    with pytest.raises(ParamsError, match=message):
        params_from_mapping({"trade": trade})
