"""A small, fast modeling setup on synthetic candles, shared by the modeling tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd

from klinecast.config import DEFAULT_INDICATORS, FeatureParams, Params, SearchSpace, SplitParams
from klinecast.indicators import spans_gaps
from klinecast.release.metadata import ArtifactMetadata
from klinecast.research import stats
from klinecast.research.features import compute_features
from klinecast.research.model import Candidate, Complexity, HyperParams
from klinecast.research.scorecard import (
    BaselineTest,
    EvaluatedSpan,
    Metrics,
    Scorecard,
    Significance,
)
from klinecast.research.strategy import StrategyRule
from tests.support.candle_factory import synthetic_candles

HOUR = dt.timedelta(hours=1)


#: The default features without the day-scale ones: what a few months of synthetic candles
#: can feed (the 200-day average alone needs 4,800 candles).
HOURLY_INDICATORS = tuple(name for name in DEFAULT_INDICATORS if not spans_gaps(name))
#: The features the small setup computes, and the history they need (measured as the seed's).
SMALL_FEATURES = FeatureParams(indicators=HOURLY_INDICATORS, min_history=540)


def small_params(**tune_overrides) -> Params:
    """Jan..Mar 2021 in sample, April out of sample, hourly features, tiny models, 5-day
    steps."""
    base = dataclasses.replace(Params(), features=SMALL_FEATURES)
    space = SearchSpace(
        n_estimators=(5, 30),
        max_depth=(2, 4),
        learning_rate=(0.05, 0.3),
        subsample=(0.6, 0.9),
        colsample_bytree=(0.6, 0.9),
        gamma=(0.0, 2.0),
        train_window=("sliding", "anchored"),
        look_back_days=(10, 20),
        horizon_hours=(1, 4),
        side=("long_only", "long_short"),
        entry_band=(0.0, 0.05),
        exit_band=(0.0, 0.02),
        min_hold_hours=(1, 6),
        cadence_hours=(1, 4),
    )
    tune = dataclasses.replace(  # three months in sample: no room for an inner hold-out
        base.tune, n_trials=6, workers=1, search_space=space, holdout_days=0, **tune_overrides
    )
    return dataclasses.replace(
        base,
        split=SplitParams(
            dt.date(2021, 1, 1), dt.date(2021, 3, 31), dt.date(2021, 4, 1), dt.date(2021, 4, 30)
        ),
        backtest=dataclasses.replace(base.backtest, step_days=5),
        tune=tune,
    )


def small_features(path: Path, *, seed: int = 3) -> Path:
    candles = synthetic_candles(24 * 120, start="2021-01-01", seed=seed)
    frame = compute_features(candles, indicators=HOURLY_INDICATORS, interval=HOUR).frame
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return path


def small_metadata(**changes) -> ArtifactMetadata:
    """The metadata of a one-feature model, as train would write it (changes override)."""
    values = dict(
        model_name="m",
        created_at="2026-11-21T12:00:00+00:00",
        symbol="BTCUSDT",
        interval="1h",
        feature_names=("ma_ratio_5",),
        min_history=10,
        candidate=Candidate(HyperParams(2, 2, 0.1, 0.8, 0.8, 0, 10), StrategyRule(), 1),
        complexity=Complexity(2, 2, 2, ("ma_ratio_5",)),
        train_start="2021-01-01T00:00:00+00:00",
        train_end="2021-01-10T23:00:00+00:00",
        train_rows=240,
        fee=0.001,
        step_days=30,
        data_version={"features_sha256": "0123456789abcdef"},
        metrics=None,
        libraries={"klinecast": "0"},
    )
    return ArtifactMetadata(**values | changes)


def small_artifact(path: Path, name: str, trees: int) -> Path:
    """A registry-ready artifact of a one-feature model named name; another tree count is
    other bytes, so another version."""
    import xgboost as xgb

    from klinecast.release import registry

    booster = xgb.train(
        {"objective": "binary:logistic"}, xgb.DMatrix([[0.0], [1.0]], label=[0, 1]), trees
    )
    registry.write_artifact(path, booster, small_metadata(model_name=name, metrics=scorecard()))
    return path


def strategy_metrics(**changes) -> Metrics:
    """A strategy's metrics with every figure 0 (changes override)."""
    values = {f.name: 0 for f in dataclasses.fields(Metrics) if f.default is dataclasses.MISSING}
    return Metrics(**values | changes)


#: The baselines the fixture's long-only model is declared to beat.
FIXTURE_BASELINES = ("buy_and_hold", "trend_50d", "trend_200d", "vol_target")


def scorecard(
    *,
    excess: float = 0.10,
    p_value: float = 0.01,
    trades: int = 12,
    against: dict[str, tuple[float, float]] | None = None,
    **changes,
) -> Scorecard:
    """A scorecard whose long-only model beats each declared baseline by `excess` with
    `p_value`, or by (excess, p-value) for the baselines in `against` (changes override any
    other field)."""
    tests = {name: (excess, p_value) for name in FIXTURE_BASELINES} | (against or {})
    declared = {
        name: BaselineTest(excess_return=e, p_value=p, mc_error=0.002, psr=0.9)
        for name, (e, p) in tests.items()
    }
    worst = stats.largest_p_value({n: t.p_value for n, t in declared.items()})
    model = strategy_metrics(cumulative_return=0.05 + excess, trades=trades)
    values = dict(
        span=EvaluatedSpan("2022-01-01T00:00:00+00:00", "2022-05-31T23:00:00+00:00", 3623, 5),
        fee_per_side=0.001,
        candidate=Candidate(HyperParams(2, 2, 0.1, 0.8, 0.8, 0, 10), StrategyRule(), 1),
        model=model,
        baselines={
            name: strategy_metrics(cumulative_return=0.05 + excess - e, trades=1)
            for name, (e, _) in tests.items()
        },
        excess_return={name: e for name, (e, _) in tests.items()},
        significance=Significance(
            test="SPA",
            bootstrap_reps=5000,
            side="long_only",
            declared=declared,
            max_p_value=declared[worst].p_value,
            max_p_baseline=worst,
            probabilistic_sharpe=0.5,
            deflated_sharpe=0.5,
            trials_run=10,
            trials_that_trade=8,
            luck_sharpe_annualised=1.0,
        ),  # fmt: skip
    )
    return Scorecard(**values | changes)


def tiny_artifact(out: Path, *, rule: StrategyRule | None = None, seed: int = 5) -> pd.DataFrame:
    """A model artifact (model.json + metadata.json) trained in a moment on synthetic candles
    with the default features; returns the candles it was trained on (800 hours)."""
    from klinecast.release.registry import write_artifact
    from klinecast.research import model

    names = list(HOURLY_INDICATORS)
    candles = synthetic_candles(800, start="2021-01-01", seed=seed)
    frame = compute_features(candles, indicators=names, interval=HOUR).frame.dropna()
    hp = HyperParams(5, 2, 0.3, 0.9, 0.9, 0, 10)
    booster = model.fit(
        frame[names].to_numpy(dtype="float32"),
        frame["label"].to_numpy(dtype="float32"),
        hp,
        feature_names=names,
    )
    write_artifact(
        out,
        booster,
        small_metadata(
            feature_names=tuple(names),
            min_history=SMALL_FEATURES.min_history,
            candidate=Candidate(hp, rule or StrategyRule("long_short", 0.02, 0.01, 2), 1),
        ),
    )
    return candles


#: params.yaml's defaults with the mirror's split: in sample 2018-2020, out of sample 2021 (the
#: models the serving and trader tests train on the shared mirror).
MIRROR_PARAMS = dataclasses.replace(
    Params(),
    split=SplitParams(
        dt.date(2018, 1, 1), dt.date(2020, 12, 31), dt.date(2021, 1, 1), dt.date(2021, 12, 31)
    ),
)


def trained_artifact(candles: pd.DataFrame, params: Params, candidate: Candidate, out: Path) -> Path:
    """A model artifact as `klinecast train` writes it: params' features on candles, the
    candidate trained on its final window, no evaluation attached. Returns out."""
    from klinecast.release.metadata import artifact_metadata
    from klinecast.release.registry import write_artifact
    from klinecast.research import training

    frame = compute_features(
        candles, indicators=params.features.indicators, interval=params.data.interval_delta
    ).frame
    trained = training.train_final(frame, params, candidate)
    metadata = artifact_metadata(
        trained, params=params, candidate=candidate, metrics=None, data_version={}
    )
    write_artifact(out, trained.booster, metadata)
    return out
