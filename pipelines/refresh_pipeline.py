"""The hourly data refresh: validate-params -> ingest -> candles -> features.

Meant for a recurring run (`klinecast pipeline submit --pipeline refresh --cron ...`): new
closed hours are downloaded, verified and turned into features; a failure (bad archive,
checksum, gap rules) shows up within the hour instead of at the next training run.
"""

from kfp import dsl

from pipelines.steps import DEFAULTS, data_steps


@dsl.pipeline(
    name="klinecast-refresh",
    description="Hourly: download + verify new Binance klines, rebuild candles and features",
)
def refresh_pipeline(
    data_symbol: str = DEFAULTS["data_symbol"],
    data_interval: str = DEFAULTS["data_interval"],
    data_start: str = DEFAULTS["data_start"],
    data_end: str = DEFAULTS["data_end"],
    data_base_url: str = DEFAULTS["data_base_url"],
    features_indicators: list = DEFAULTS["features_indicators"],
    features_min_history: int = DEFAULTS["features_min_history"],
    split_in_sample_start: str = DEFAULTS["split_in_sample_start"],
    split_in_sample_end: str = DEFAULTS["split_in_sample_end"],
    split_out_of_sample_start: str = DEFAULTS["split_out_of_sample_start"],
    split_out_of_sample_end: str = DEFAULTS["split_out_of_sample_end"],
    backtest_step_days: int = DEFAULTS["backtest_step_days"],
    backtest_fee: float = DEFAULTS["backtest_fee"],
    backtest_neutral_band: float = DEFAULTS["backtest_neutral_band"],
    backtest_coin_flip_seed: int = DEFAULTS["backtest_coin_flip_seed"],
    tune_search_space: dict = DEFAULTS["tune_search_space"],
    tune_n_trials: int = DEFAULTS["tune_n_trials"],
    tune_seed: int = DEFAULTS["tune_seed"],
    tune_study_name: str = DEFAULTS["tune_study_name"],
    tune_storage: str = DEFAULTS["tune_storage"],
    tune_pruner_warmup_folds: int = DEFAULTS["tune_pruner_warmup_folds"],
    tune_pruner_startup_trials: int = DEFAULTS["tune_pruner_startup_trials"],
    publish_registry: str = DEFAULTS["publish_registry"],
    publish_model_name: str = DEFAULTS["publish_model_name"],
    publish_gate_baseline: str = DEFAULTS["publish_gate_baseline"],
    publish_gate_min_excess_return: float = DEFAULTS["publish_gate_min_excess_return"],
    trade_broker: str = DEFAULTS["trade_broker"],
    trade_inference_url: str = DEFAULTS["trade_inference_url"],
    trade_protocol: str = DEFAULTS["trade_protocol"],
    trade_ledger: str = DEFAULTS["trade_ledger"],
    trade_quantity: float = DEFAULTS["trade_quantity"],
    trade_max_quantity: float = DEFAULTS["trade_max_quantity"],
    trade_kill_switch_return: float = DEFAULTS["trade_kill_switch_return"],
    trade_retrain_min_accuracy: float = DEFAULTS["trade_retrain_min_accuracy"],
    trade_retrain_window: int = DEFAULTS["trade_retrain_window"],
    trade_retrain_cooldown_hours: int = DEFAULTS["trade_retrain_cooldown_hours"],
):
    data_steps(dict(locals()))
