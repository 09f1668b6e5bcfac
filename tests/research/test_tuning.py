import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from klinecast.errors import KlinecastError
from klinecast.research import tuning
from klinecast.research.strategy import StrategyRule
from tests.support.helpers import write_cli_params
from tests.support.model_fixtures import small_features, small_params

KLINECAST = Path(sys.executable).parent / "klinecast"


@pytest.fixture()
def features(tmp_path):
    return small_features(tmp_path / "features.parquet")


def run_tune(features, storage, *, n_trials, workers=1, params=None, name="t"):
    return tuning.tune(
        features_path=features,
        params=params or small_params(),
        storage_url=storage,
        name=name,
        n_trials=n_trials,
        workers=workers,
    )


def summary(study):
    return [(t.number, t.state, t.params, t.value) for t in study.trials]


def test_suggest_params_stays_in_the_search_space():
    space = small_params().tune.search_space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    sides = set()
    for _ in range(60):
        candidate = tuning.suggest_params(study.ask(), space)
        hp, rule = candidate.hp, candidate.rule
        assert space.n_estimators[0] <= hp.n_estimators <= space.n_estimators[1]
        assert space.look_back_days[0] <= hp.look_back_days <= space.look_back_days[1]
        assert isinstance(hp.gamma, int) and isinstance(hp.max_depth, int)
        assert space.horizon_hours[0] <= candidate.horizon_hours <= space.horizon_hours[1]
        assert space.entry_band[0] <= rule.entry_band <= space.entry_band[1]
        assert rule.exit_band <= rule.entry_band and rule.exit_band <= space.exit_band[1]
        assert space.min_hold_hours[0] <= rule.min_hold_hours <= space.min_hold_hours[1]
        sides.add(rule.side)
    assert sides == set(space.side)


def test_a_range_of_one_value_fixes_a_lever():
    space = dataclasses.replace(
        small_params().tune.search_space,
        side=("long_short",),
        entry_band=(0.0, 0.0),
        exit_band=(0.0, 0.0),
        min_hold_hours=(1, 1),
        horizon_hours=(1, 1),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    rules = {tuning.suggest_params(study.ask(), space).rule for _ in range(10)}
    assert rules == {StrategyRule()}  # the seed's rule, every time


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ("return_after_fees", 1.1 * 0.9 * 1.05 - 1),
        ("sharpe_after_fees", None),
        # buy and hold pays a fee on entry (hour 1) and on the close after the last hour
        ("excess_over_buy_and_hold", (1.1 * 0.9 * 1.05 - 1) - (1.009 * 0.98 * 1.019 - 1)),
    ],
)
def test_objectives_by_hand(objective, expected):
    returns = np.array([0.1, -0.1, 0.05])
    market = np.array([0.01, -0.02, 0.02])
    value = tuning.objective_value(objective, returns, market, fee=0.001)
    if expected is None:
        expected = returns.mean() / returns.std(ddof=1) * np.sqrt(24 * 365)
    assert value == pytest.approx(expected)
    assert tuning.objective_value(objective, np.zeros(3), np.zeros(3), fee=0.001) == pytest.approx(
        1 - 0.999**2 if objective == "excess_over_buy_and_hold" else 0.0
    )


def test_pruner_compares_the_current_fold_with_the_median():
    pruner = tuning.FoldMedianPruner(n_startup_trials=2, n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for values in ([0.0, -0.1, -0.2], [0.0, -0.3, -0.4], [0.0, 0.1, 0.2]):
        trial = study.ask()
        for step, v in enumerate(values):
            trial.report(v, step)
        study.tell(trial, values[-1])
    trial = study.ask()
    trial.report(0.05, 0)
    assert not trial.should_prune()  # still warming up
    trial.report(-0.2, 1)  # the median at fold 1 is -0.1
    assert trial.should_prune()
    other = study.ask()
    other.report(0.0, 1)
    assert not other.should_prune()
    # optuna's own MedianPruner compares the best value so far (0.05 at fold 0): it keeps it.
    assert not optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1).prune(
        study, study.trials[3]
    )


def test_tuning_prunes_hopeless_trials(features, tmp_path):
    study = run_tune(features, f"sqlite:///{tmp_path}/s.db", n_trials=14)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    # a pruned trial stopped early: fewer folds than a complete one with the same look_back
    assert all(
        len(p.intermediate_values) < max(len(c.intermediate_values) for c in complete)
        for p in pruned
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_study_resumes_on_rerun(features, tmp_path, backend, request):
    storage = (
        f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else request.getfixturevalue("postgres")
    )
    name = f"resume-{backend}-{time.time_ns()}"
    try:
        first = summary(run_tune(features, storage, n_trials=3, name=name))
        study = run_tune(features, storage, n_trials=5, name=name)
        assert summary(study)[:3] == first  # the old trials are kept, not redone
        assert tuning.finished_trials(study) == 5
        again = run_tune(features, storage, n_trials=5, name=name)
        assert len(again.trials) == 5  # nothing left to do
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_seeded_runs_are_reproducible(features, tmp_path):
    a = run_tune(features, f"sqlite:///{tmp_path}/a.db", n_trials=5)
    b = run_tune(features, f"sqlite:///{tmp_path}/b.db", n_trials=5)
    assert summary(a) == summary(b)
    c = run_tune(features, f"sqlite:///{tmp_path}/c.db", n_trials=5, params=small_params(seed=7))
    assert summary(c) != summary(a)


def test_workers_share_one_study(features, tmp_path):
    study = run_tune(features, f"sqlite:///{tmp_path}/w.db", n_trials=6, workers=2)
    assert tuning.finished_trials(study) >= 6
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params)  # each worker draws its own points


def cli_tune(tmp_path, features, params_path, out="out"):
    return [
        KLINECAST,
        "tune",
        "--params",
        params_path,
        "--features",
        features,
        "--out-dir",
        tmp_path / out,
        "--no-progress",
    ]


def test_separate_processes_on_one_storage_url(features, tmp_path):
    storage = f"sqlite:///{tmp_path}/shared.db"
    params_path = write_cli_params(tmp_path, storage, n_trials=8)
    procs = [
        subprocess.Popen(
            cli_tune(tmp_path, features, params_path, f"out{i}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    best = [json.loads((tmp_path / f"out{i}/best_params.json").read_text()) for i in range(2)]
    name = best[0]["study_name"]
    assert best[1]["study_name"] == name
    study = optuna.load_study(study_name=name, storage=storage)
    assert tuning.finished_trials(study) >= 8


def test_a_killed_run_resumes(features, tmp_path):
    storage = f"sqlite:///{tmp_path}/crash.db"
    params_path = write_cli_params(tmp_path, storage, n_trials=30)
    proc = subprocess.Popen(
        cli_tune(tmp_path, features, params_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    finished = 0
    while finished < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            summaries = optuna.get_all_study_summaries(storage)
            finished = summaries[0].n_trials if summaries else 0
        except Exception:
            finished = 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    name = optuna.get_all_study_summaries(storage)[0].study_name
    before = tuning.finished_trials(optuna.load_study(study_name=name, storage=storage))
    assert 0 < before < 30
    done = subprocess.run(cli_tune(tmp_path, features, params_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name=name, storage=storage)
    assert tuning.finished_trials(study) >= 30
    assert (tmp_path / "out/best_params.json").is_file()


def test_outputs(features, tmp_path):
    study = run_tune(features, f"sqlite:///{tmp_path}/o.db", n_trials=6)
    out = tmp_path / "tune"
    result = tuning.write_outputs(
        study,
        tuning.TuningFiles.in_dir(out),
        storage_url="postgresql://me:hunter2@db/optuna",
        objective="return_after_fees",
    )
    best = json.loads((out / "best_params.json").read_text())
    assert best == json.loads(json.dumps(result))
    assert set(best["params"]) == {
        "n_estimators", "max_depth", "learning_rate", "subsample", "colsample_bytree", "gamma",
        "look_back_days", "horizon_hours", "side", "entry_band", "exit_band", "min_hold_hours",
    }  # fmt: skip
    assert best["value"] == study.best_value
    assert best["params"]["exit_band"] <= best["params"]["entry_band"]  # the exit it traded
    search = best["search"]
    assert search["trials_run"] == len(study.trials) == search["complete"] + search["pruned"]
    sharpes = [t.user_attrs["hourly_sharpe"] for t in study.trials if t.state.name == "COMPLETE"]
    assert search["sharpe_variance"] == pytest.approx(np.var(sharpes, ddof=1))
    assert best["in_sample"]["return_after_fees"] == pytest.approx(study.best_value)
    assert tuning.BestParams.read(out / "best_params.json").candidate.as_dict() == best["params"]
    assert "hunter2" not in (out / "best_params.json").read_text()
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == len(study.trials) and "params_look_back_days" in trials
    pages = {}
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        page = (out / f"{plot}.html").read_text()
        assert '<script src="http' not in page and "Plotly.newPlot" in page
        assert len(page) > 3_000_000  # plotly.js is inside the page
        pages[plot] = page
    assert "Optimization History Plot" in pages["optimization_history"]
    for plot in ("param_importances", "parallel_coordinate"):  # every tuned parameter drawn
        assert all(f'"{name}"' in pages[plot] or f"{name}<" in pages[plot] for name in best["params"])


def test_unreachable_storage_is_a_clear_error_without_the_password(features):
    with pytest.raises(
        KlinecastError, match=r"cannot open the Optuna storage postgresql://me:\*\*\*@127.0.0.1:1/x"
    ) as err:
        run_tune(features, "postgresql://me:hunter2@127.0.0.1:1/x", n_trials=1)
    assert "hunter2" not in str(err.value)


def test_look_back_longer_than_the_in_sample_span_is_a_clear_error(features):
    params = small_params()
    space = dataclasses.replace(params.tune.search_space, look_back_days=(10, 200))
    params = dataclasses.replace(params, tune=dataclasses.replace(params.tune, search_space=space))
    with pytest.raises(
        KlinecastError, match=r"fewer than look_back_days high \(200\) \+ step_days \(5\)"
    ):
        run_tune(features, "sqlite://", n_trials=1, params=params)


@pytest.mark.parametrize("horizon", [1, 3])
def test_the_in_sample_span_uses_no_candle_after_it(features, horizon):
    """The span's last hour would earn (and be labelled by) the first out-of-sample candle."""
    params = small_params()
    frame = pd.read_parquet(features)
    rows = tuning.in_sample_rows(frame, params)
    assert rows.index[-1] == pd.Timestamp("2021-03-31 23:00", tz="UTC")
    assert np.isnan(rows["next_return"].iloc[-1]) and np.isnan(rows["label"].iloc[-1])
    assert rows["next_return"].iloc[:-1].notna().all()  # ... and only that hour loses them
    # poison every candle from the out-of-sample start on: the trial does not move
    poisoned = frame.copy()
    after = poisoned.index >= pd.Timestamp("2021-03-31 23:00", tz="UTC")
    poisoned.loc[after, ["next_return", "label"]] = [0.5, 1.0]
    candidate = tuning.Candidate.from_dict(CANDIDATE | {"horizon_hours": horizon})
    runs = [
        tuning.in_sample_walk_forward(tuning.in_sample_rows(f, params), params, candidate)
        for f in (frame, poisoned)
    ]
    pd.testing.assert_frame_equal(runs[0].predictions, runs[1].predictions)
    assert runs[0].predictions.index[-1] == pd.Timestamp("2021-03-31 22:00", tz="UTC")


def test_every_trial_is_scored_on_the_same_hours(features):
    """Whatever a trial's look-back, its folds test the same hours, so trials (and the
    pruner's fold-by-fold medians) compare on equal terms."""
    params = small_params()
    rows = tuning.in_sample_rows(pd.read_parquet(features), params)
    low, high = params.tune.search_space.look_back_days
    runs = {
        days: tuning.in_sample_walk_forward(
            rows, params, tuning.Candidate.from_dict(CANDIDATE | {"look_back_days": days})
        )
        for days in (low, high)
    }
    short, long = (runs[low].predictions, runs[high].predictions)
    assert short.index.equals(long.index)
    assert short.index[0] == rows.index[0].floor("D") + pd.Timedelta(days=high)
    assert (short["fold"].to_numpy() == long["fold"].to_numpy()).all()
    assert not np.allclose(short["prob_up"], long["prob_up"])  # the look-back did change


CANDIDATE = {
    "n_estimators": 10, "max_depth": 3, "learning_rate": 0.2, "subsample": 0.8,
    "colsample_bytree": 0.8, "gamma": 0, "look_back_days": 15, "horizon_hours": 1,
    "side": "long_short", "entry_band": 0.0, "exit_band": 0.0, "min_hold_hours": 1,
}  # fmt: skip


def test_study_name_changes_with_what_makes_trials_comparable(monkeypatch):
    base = small_params()
    name = tuning.study_name(base, data_version="a")
    assert name.startswith("klinecast-") and name == tuning.study_name(base, data_version="a")
    assert tuning.study_name(base, data_version="b") != name
    fee = dataclasses.replace(base, backtest=dataclasses.replace(base.backtest, fee=0.002))
    assert tuning.study_name(fee, data_version="a") != name
    monkeypatch.setattr(tuning, "SCORING_VERSION", tuning.SCORING_VERSION + 1)
    assert tuning.study_name(base, data_version="a") != name  # trials scored another way


def _open_fresh(url: str, barrier) -> None:
    barrier.wait()  # every process opens the brand-new database at the same moment
    tuning.open_study(url, "race", small_params())


def test_processes_opening_one_new_storage_at_once_all_succeed(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    url = f"sqlite:///{tmp_path}/new.db"
    barrier = context.Barrier(6)
    processes = [context.Process(target=_open_fresh, args=(url, barrier)) for _ in range(6)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * 6
    assert optuna.load_study(study_name="race", storage=url).study_name == "race"
