"""Meta-labels: a primary rule among the features (`trend_<N>d`) proposes each bet; the
classifier, trained only on the hours it proposes one, learns which to take; the rule acts on
0.5 (flat) wherever the primary proposes none; and the gate holds the model to that rule too."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from klinecast.config import Params, SearchSpace
from klinecast.errors import KlinecastError, ParamsError
from klinecast.research import baselines, evaluation, training
from klinecast.research.backtest import walk_forward
from klinecast.research.features import LABEL, compute_features
from klinecast.research.model import Candidate, HyperParams
from klinecast.research.strategy import SEED_RULE, StrategyRule, meta_probability, positions
from tests.support.candle_factory import synthetic_candles
from tests.support.model_fixtures import (
    HOUR,
    HOURLY_INDICATORS,
    SMALL_FEATURES,
    small_metadata,
    small_params,
)

PRIMARY = "trend_2d"
FEATURES = (*HOURLY_INDICATORS, PRIMARY)
RULE = StrategyRule("long_only", primary=PRIMARY)
HP = HyperParams(30, 3, 0.1, 0.8, 0.8, 0.0, 15)


@pytest.fixture(scope="module")
def frame():
    candles = synthetic_candles(24 * 90, seed=4)
    return compute_features(candles, indicators=FEATURES, interval=HOUR).frame


def meta_params(**backtest) -> Params:
    params = small_params()
    return dataclasses.replace(
        params,
        features=dataclasses.replace(SMALL_FEATURES, indicators=FEATURES),
        backtest=dataclasses.replace(params.backtest, **backtest),
    )


def test_the_trend_feature_is_the_trend_baseline_s_rule(frame):
    """The feature decides at the candle that closes at 00:00 UTC and holds until the next, as
    the trend baseline does: on gap-free candles the two agree hour for hour, once the
    baseline's time window (which starts counting at the frame's first row) is full."""
    held = baselines.positions(
        frame, frame.index, params=meta_params(trend_days=(2,)).backtest, interval=HOUR
    )
    full = frame.index >= frame.index[0] + pd.Timedelta(days=3)
    np.testing.assert_array_equal(frame.loc[full, PRIMARY], held["trend_2d"][full])
    assert 0 < frame[PRIMARY].mean() < 1  # the rule is on some days and off others
    changes = np.flatnonzero(np.diff(frame[PRIMARY].to_numpy()))
    assert ((frame.index[changes + 1] + HOUR).hour == 0).all()  # decided daily, at 00:00


def test_the_rule_acts_on_the_classifier_only_where_the_primary_proposes_a_bet():
    proba = np.array([0.9, 0.9, 0.2, 0.7])
    acted = meta_probability(proba, RULE, np.array([1.0, 0.0, 1.0, np.nan]))
    np.testing.assert_array_equal(acted, [0.9, 0.5, 0.2, 0.5])
    np.testing.assert_array_equal(positions(acted, RULE)[0], [1, 0, 0, 0])
    assert meta_probability(proba, SEED_RULE) is proba  # no primary: the classifier's own
    # the primary turning off ends a bet at once, whatever the minimum hold and the cadence
    held = dataclasses.replace(RULE, min_hold_hours=48, cadence_hours=4)
    primary = np.array([1.0] * 3 + [0.0] * 10)
    hours = np.arange(13) % 24
    acted = meta_probability(np.full(13, 0.9), held, primary)
    np.testing.assert_array_equal(
        positions(acted, held, decision_hours=hours)[0], [1] * 3 + [0] * 10
    )
    # without a primary the same 0.5 is held through the minimum hold, as before
    plain = dataclasses.replace(held, primary="none")
    assert positions(acted, plain, decision_hours=hours)[0].tolist() == [1] * 13
    with pytest.raises(ValueError, match="trend_2d needs that feature's values"):
        meta_probability(proba, RULE)
    with pytest.raises(ValueError, match="side must be long_only"):
        StrategyRule("long_short", primary=PRIMARY)


def walk(features, candidate, **backtest):
    first_test = features.index[0] + pd.Timedelta(days=40)
    return walk_forward(
        features, candidate=candidate, feature_names=FEATURES, test_start=first_test,
        test_end=first_test + pd.Timedelta(days=40), backtest=meta_params(**backtest).backtest,
        interval=HOUR, seed=3, nthread=1,
    )  # fmt: skip


def test_a_meta_labelled_model_learns_only_from_the_primary_s_bets(frame):
    """Rewriting every label of an hour the primary proposes no bet leaves the probabilities
    as they were; rewriting those of its bets changes them (so the check can fail)."""
    candidate = Candidate(HP, RULE, 1)
    off = frame[PRIMARY] < 0.5
    clean = walk(frame, candidate).predictions
    no_bet, bet = frame.copy(), frame.copy()
    no_bet.loc[off, LABEL] = 1.0 - no_bet.loc[off, LABEL]
    bet.loc[~off, LABEL] = 1.0 - bet.loc[~off, LABEL]
    np.testing.assert_array_equal(clean["prob_up"], walk(no_bet, candidate).predictions["prob_up"])
    assert not np.array_equal(clean["prob_up"], walk(bet, candidate).predictions["prob_up"])


def test_it_holds_nothing_the_primary_does_not_propose_and_is_held_to_the_primary(frame):
    result = walk(frame, Candidate(HP, RULE, 1), bootstrap_reps=200)
    p = result.predictions
    primary = frame.loc[p.index, PRIMARY].to_numpy()
    assert (p.loc[primary == 0, "position"] == 0).all()
    assert (p.loc[primary == 0, "prob_up"] == 0.5).all()
    assert p.loc[primary == 1, "prob_up"].nunique() > 10  # the classifier's own view
    # the classifier is scored on its bets only, not on the rule's 0.5 elsewhere
    np.testing.assert_array_equal(p["proposed"], primary == 1)
    bets = p[(primary == 1) & p["label"].notna()]
    right = ((bets["prob_up"] > 0.5) == (bets["label"] > 0.5)).mean()
    assert result.model.classifier_accuracy == pytest.approx(right)
    assert sum(b.count for b in evaluation.calibration(p)) == len(bets)
    assert 0 < p["position"].sum() < (primary == 1).sum()  # it took some bets and skipped some
    np.testing.assert_array_equal(p["primary_trend_2d_position"], primary)
    card = evaluation.scorecard(result, meta_params(bootstrap_reps=200), Candidate(HP, RULE, 1))
    assert "primary_trend_2d" in card.significance.declared
    plain = walk(frame, Candidate(HP, dataclasses.replace(RULE, primary="none"), 1))
    assert "primary_trend_2d" not in plain.baselines


def test_the_final_model_trains_on_the_primary_s_bets_only(frame):
    params = meta_params()  # its cut-off, the out-of-sample end, is after the frame's last row
    trained = training.train_final(frame, params, Candidate(HP, RULE, 1))
    plain = training.train_final(frame, params, Candidate(HP, SEED_RULE, 1))
    window = frame.loc[plain.train_start : plain.train_end]
    assert plain.rows == window[LABEL].notna().sum()
    assert trained.rows == (window[LABEL].notna() & (window[PRIMARY] == 1)).sum() < plain.rows


def test_a_primary_must_be_a_trend_rule_among_the_features_on_a_long_only_side():
    with pytest.raises(ParamsError, match="primary.*rsi_14"):
        SearchSpace(primary=("rsi_14",), side=("long_only",))
    with pytest.raises(ParamsError, match="day-scale trend rules.*trend_48"):
        SearchSpace(primary=("trend_48",), side=("long_only",))  # counts candles, not days
    with pytest.raises(ParamsError, match=r"side must be \[long_only\]"):
        SearchSpace(primary=("none", PRIMARY), side=("long_only", "long_short"))
    space = dataclasses.replace(
        small_params().tune.search_space, primary=("none", PRIMARY), side=("long_only",)
    )
    tune = dataclasses.replace(small_params().tune, search_space=space)
    with pytest.raises(ParamsError, match="must be among features.indicators"):
        dataclasses.replace(small_params(), tune=tune)
    chosen = dataclasses.replace(meta_params(), tune=tune).tune.search_space.primary
    assert chosen == ("none", PRIMARY)


def test_the_metadata_and_the_report_carry_the_primary():
    from klinecast.release import report
    from klinecast.release.metadata import ArtifactMetadata

    meta = small_metadata(candidate=Candidate(HP, RULE, 1), feature_names=FEATURES)
    assert ArtifactMetadata.from_dict(meta.as_dict()).rule.primary == PRIMARY
    assert "trend_2d proposes each bet; the model takes or skips it" in report._model_table(meta)
    assert "proposes" not in report._model_table(small_metadata())


def test_a_search_tries_the_primary_beside_none(frame, tmp_path):
    from klinecast.research import tuning

    path = tmp_path / "features.parquet"
    frame.to_parquet(path)
    params = meta_params(bootstrap_reps=200)
    space = dataclasses.replace(
        params.tune.search_space, primary=("none", PRIMARY), side=("long_only",)
    )
    params = dataclasses.replace(
        params, tune=dataclasses.replace(params.tune, search_space=space, holdout_days=0)
    )
    study = tuning.tune(
        features_path=path, params=params, storage_url=f"sqlite:///{tmp_path}/t.db", name="m",
        n_trials=6, workers=1,
    )  # fmt: skip
    tried = {t.params["primary"] for t in study.trials if t.value is not None}
    assert tried == {"none", PRIMARY}


def test_a_pooled_meta_labelled_model_takes_each_symbol_s_bets_only(frame):
    from klinecast.research.pooled import walk_forward_pooled

    other = compute_features(
        synthetic_candles(24 * 90, seed=5), indicators=FEATURES, interval=HOUR
    ).frame
    first_test = frame.index[0] + pd.Timedelta(days=40)
    results = walk_forward_pooled(
        {"AAA": frame, "BBB": other}, candidate=Candidate(HP, RULE, 1), feature_names=FEATURES,
        test_start=first_test, test_end=first_test + pd.Timedelta(days=30),
        backtest=meta_params().backtest, interval=HOUR, seed=3, nthread=1,
    )  # fmt: skip
    for symbol, rows in (("AAA", frame), ("BBB", other)):
        p = results[symbol].predictions
        primary = rows.loc[p.index, PRIMARY].to_numpy()
        assert (p.loc[primary == 0, "prob_up"] == 0.5).all()
        assert (p.loc[primary == 0, "position"] == 0).all() and p["position"].sum() > 0
        np.testing.assert_array_equal(p["primary_trend_2d_position"], primary)


def test_a_primary_with_no_bet_in_any_training_window_says_so(frame):
    """Bets only after the last fold's test start: the folds have none to learn from."""
    never = frame.copy()
    late = never.index >= never.index[0] + pd.Timedelta(days=79)
    never[PRIMARY] = late.astype(float)
    with pytest.raises(KlinecastError, match="proposes no bet in any fold's training window"):
        walk(never, Candidate(HP, RULE, 1))


def test_a_book_whose_symbols_chose_different_primaries_is_held_to_what_they_share(tmp_path):
    """One symbol meta-labelled on trend_2d, one without a primary: the book is held to the
    baselines both have, not to the one symbol's primary (which the other lacks)."""
    from klinecast import atomic
    from klinecast.book import Layout
    from klinecast.release.portfolio_page import evaluate_book

    params = dataclasses.replace(meta_params(bootstrap_reps=200), data=dataclasses.replace(
        meta_params().data, symbols=("AAA", "BBB")))  # fmt: skip
    layout = Layout(tmp_path)
    for symbol, rule, seed in (("AAA", RULE, 4), ("BBB", SEED_RULE, 5)):
        features = compute_features(
            synthetic_candles(24 * 90, seed=seed), indicators=FEATURES, interval=HOUR
        ).frame
        candidate = Candidate(HP, dataclasses.replace(rule, side="long_only"), 1)
        result = walk(features, candidate, bootstrap_reps=200)
        card = evaluation.scorecard(result, params, candidate)
        files = layout.symbol(symbol)
        atomic.write_parquet(files.predictions, result.predictions)
        atomic.write_json(files.metrics, card.as_dict())
        atomic.write_json(files.receipt, {"gate": {"passed": False}})
        atomic.write_json(files.best_params, {"data": {}})
    book = evaluate_book(params, layout.symbol)[0]
    assert "primary_trend_2d" not in book.tests and "buy_and_hold" in book.tests


def test_a_served_model_whose_primary_is_not_among_its_features_does_not_load(tmp_path):
    """Refused when its metadata is read, not on every request (the transformer keeps serving
    what it had, or says the model is unavailable)."""
    import xgboost as xgb

    from klinecast.release.registry import write_artifact
    from klinecast.serving.models import SymbolModel

    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix([[0.0], [1.0]], label=[0, 1]))
    meta = small_metadata(candidate=Candidate(HP, RULE, 1))  # its one feature is ma_ratio_5
    write_artifact(tmp_path / "m", booster, meta)
    with pytest.raises(KeyError, match="trend_2d is not among its features"):
        SymbolModel(str(tmp_path / "m"), "m").load()
    write_artifact(tmp_path / "ok", booster, small_metadata(candidate=Candidate(HP, RULE, 1),
                   feature_names=(PRIMARY,)))  # fmt: skip
    served = SymbolModel(str(tmp_path / "ok"), "ok")
    served.load()
    assert served.acted_on(0.8, np.array([[0.0]])) == 0.5
    assert served.acted_on(0.8, np.array([[1.0]])) == 0.8
