import datetime as dt

import pytest
import yaml

from klinecast.config import SEED_INDICATORS, Params, load_params, params_from_mapping
from klinecast.errors import ParamsError
from tests.support.paths import REPO


def test_repo_params_yaml_loads_with_the_defaults():
    params = load_params(REPO / "params.yaml", environ={})
    assert params.data.symbol == "BTCUSDT" and params.data.interval == "1h"
    assert params.data.start == dt.date(2017, 8, 1) and params.data.end is None
    assert params.features.indicators[: len(SEED_INDICATORS)] == SEED_INDICATORS
    assert params.features.min_history == 4900
    assert "ma_ratio_200d" in params.features.indicators
    assert params.tune.search_space.side == ("long_only",)  # what a spot account can do
    assert params == Params()  # the dataclass defaults and params.yaml agree


def test_the_seed_setup_is_one_documented_params_file():
    seed = load_params(REPO / "examples/seed-params.yaml")
    assert seed.features.indicators == SEED_INDICATORS
    space = seed.tune.search_space
    assert space.side == ("long_short",) and space.horizon_hours == (1, 1)
    assert space.entry_band == space.exit_band == (0.0, 0.0) and space.min_hold_hours == (1, 1)
    assert seed.tune.objective == "return_after_fees"
    assert (space.n_estimators, space.max_depth, space.gamma) == ((350, 1000), (3, 10), (0, 20))
    assert space.look_back_days == (30, 180) and space.train_window == ("sliding",)
    assert space.cadence_hours == (1,)
    defaults = Params()
    # the same hours, costs, baselines and gate as the defaults: a fair comparison
    assert (seed.split, seed.backtest, seed.publish) == (
        defaults.split,
        defaults.backtest,
        defaults.publish,
    )


@pytest.mark.parametrize(
    ("tune", "backtest", "message"),
    [
        (
            {"search_space": {"exit_band": [0.0, 0.2], "entry_band": [0.0, 0.1]}},
            {},
            r"tune.search_space.exit_band: its high 0.2 is above entry_band's high 0.1",
        ),
        ({"search_space": {"horizon_hours": [0, 4]}}, {}, "horizon_hours: must be >= 1"),
        (
            {"search_space": {"horizon_hours": [1, 200]}},
            {"step_days": 5},
            r"horizon_hours: high 200 is longer than a walk-forward step \(backtest.step_days 5 = 120",
        ),
        ({"search_space": {"min_hold_hours": [6, 2]}}, {}, "min_hold_hours: low 6 is above high 2"),
        ({"search_space": {"side": ["short_only"]}}, {}, "side: unknown side 'short_only'"),
        ({"search_space": {"side": []}}, {}, "side: lists no side"),
        ({"search_space": {"entry_band": [0.0, 0.6]}}, {}, r"entry_band: must lie in \[0, 0.5\)"),
        ({"objective": "profit"}, {}, "tune.objective: expected one of"),
    ],
)
def test_bad_strategy_settings_are_refused_up_front(tune, backtest, message):
    with pytest.raises(ParamsError, match=message):
        params_from_mapping({"tune": tune, "backtest": backtest})


def test_every_problem_of_a_file_is_reported_at_once():
    with pytest.raises(ParamsError) as error:
        params_from_mapping(
            {
                "data": {"symbl": "X", "interval": "7h"},
                "tune": {"objective": "profit", "search_space": {"side": ["x"]}},
                "publish": {"gate_max_p_value": 2},
            }
        )
    keys = [key for key, _ in error.value.problems]
    assert keys == [
        "data.symbl", "data.interval", "tune.search_space.side", "tune.objective",
        "publish.gate_max_p_value",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"dta": {}},
            r"params: dta: unknown key; expected one of \['backtest', 'data', 'features', 'online', 'portfolio', 'publish', 'split', 'trade', 'tune'\]",
        ),
        ({"data": {"symbl": "X"}}, "params: data.symbl: unknown key"),
        ({"data": {"start": "yesterday"}}, "params: data.start: expected a date like 2018-01-01"),
        ({"data": {"start": "2020-01-01", "end": "2019-01-01"}}, "data.end: 2019-01-01 is before"),
        ({"data": {"interval": "7h"}}, "params: data.interval: expected one of"),
        ({"data": {"symbols": ["btc-usdt"]}}, "params: data.symbols: expected upper-case pairs like BTCUSDT, got 'btc-usdt'"),
        ({"data": {"symbols": []}}, "params: data.symbols: lists no symbol"),
        ({"data": {"symbols": ["ETHUSDT", "ETHUSDT"]}}, "params: data.symbols: lists a symbol twice"),
        ({"data": {"symbol": "BTCUSDT"}}, "params: data.symbol: was renamed data.symbols, a list of pairs"),
        (
            {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}, "portfolio": {"weights": {"BTCUSDT": 1.0}}},
            r"params: portfolio.weights: must give a weight to each of data.symbols \(BTCUSDT, ETHUSDT\) and no other; got BTCUSDT",
        ),
        (
            {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}, "portfolio": {"weights": {"BTCUSDT": 0.7, "ETHUSDT": 0.7}}},
            "params: portfolio.weights: must sum to 1, got 1.4",
        ),
        ({"portfolio": {"weights": {"BTCUSDT": "half"}}}, "params: portfolio.weights.BTCUSDT: expected a number"),
        (
            {"publish": {"model_name": "klinecast-btcusdt-1h"}},
            r"params: publish.model_name: 'klinecast-btcusdt-1h' names no \{symbol\}: it is each "
            r"symbol's model name, like klinecast-\{symbol\}-\{interval\}. Models published under a "
            r"fixed name are renamed by `klinecast registry migrate --old-name klinecast-btcusdt-1h`",
        ),
        (
            {"publish": {"model_name": "klinecast-{symbol}-{days}"}},
            r"params: publish.model_name: 'klinecast-\{symbol\}-\{days\}': only \{symbol\} and "
            r"\{interval\} are filled in",
        ),
        ({"publish": {"service_name": "Klinecast"}}, "params: publish.service_name: expected lower-case"),
        (
            {"tune": {"holdout_days": 1461}},
            r"params: tune.holdout_days: 1461 leaves the search no day of the in-sample span "
            r"2018-01-01 .. 2021-12-31 \(1461 days\)",
        ),
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
            r"features.min_history: 20 is not more than the longest indicator window \(4800",
        ),
        ({"backtest": {"trend_days": [50, 50]}}, "backtest.trend_days: lists a period twice"),
        (
            {"backtest": {"trend_days": [1]}},
            "trend_days: expected one or more periods of at least 2",
        ),
        ({"backtest": {"slippage_bps": -1}}, "backtest.slippage_bps: expected basis points"),
        ({"backtest": {"vol_target": 0}}, r"backtest.vol_target: expected an annual volatility"),
        (
            {"tune": {"search_space": {"cadence_hours": [5]}}},
            "cadence_hours: expected divisors of 24",
        ),
        (
            {"tune": {"search_space": {"train_window": ["expanding"]}}},
            "train_window: expected some of",
        ),
        ({"tune": {"objective": "excess_over_buy_and_hold"}}, "tune.objective: expected one of"),
        (
            {"data": {"interval": "4h"}, "features": {"indicators": ["rsi_14", "ma_ratio_50d"]}},
            r"\['ma_ratio_50d'\] count their period in days of hourly candles; data.interval is 4h",
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
        Params().data.symbols = ("ETHUSDT",)


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


def test_the_environment_overrides_its_keys_once_at_loading(tmp_path):
    (tmp_path / "params.yaml").write_text("trade:\n  broker: paper\n")
    environ = {
        "KLINECAST_BROKER": "testnet",
        "KLINECAST_REGISTRY": "s3://models/prod",
        "KLINECAST_OPTUNA_STORAGE": "",  # empty: not set
        "KLINECAST_REDIS": "redis.klinecast.svc:6379",
    }
    params = load_params(tmp_path / "params.yaml", environ=environ)
    assert params.trade.broker == "testnet" and params.publish.registry == "s3://models/prod"
    assert params.online.redis == "redis.klinecast.svc:6379"
    assert params.tune.storage == Params().tune.storage
    assert load_params(tmp_path / "params.yaml", environ={}).trade.broker == "paper"


def test_a_bad_value_from_the_environment_names_its_variable(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    with pytest.raises(
        ParamsError,
        match=r"trade.broker: expected paper or testnet, got 'mainnet' \(from \$KLINECAST_BROKER\)",
    ):
        load_params(tmp_path / "params.yaml", environ={"KLINECAST_BROKER": "mainnet"})


def test_the_five_symbol_example_loads():
    params = load_params(REPO / "examples" / "five-symbols.yaml")
    assert params.data.symbols == ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")


