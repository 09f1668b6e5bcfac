import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from klinecast.book import Layout
from klinecast.errors import KlinecastError
from klinecast.research import evaluation, stats, training, tuning
from klinecast.research.model import Candidate
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
    return [(t.number, t.state, t.params, t.value, t.user_attrs) for t in study.trials]


def test_suggest_params_stays_in_the_search_space():
    space = small_params().tune.search_space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    sides, windows, cadences = set(), set(), set()
    for _ in range(60):
        trial = study.ask()
        candidate = tuning.suggest_params(trial, space)
        hp, rule = candidate.hp, candidate.rule
        assert space.n_estimators[0] <= hp.n_estimators <= space.n_estimators[1]
        assert space.look_back_days[0] <= hp.look_back_days <= space.look_back_days[1]
        assert isinstance(hp.max_depth, int) and isinstance(hp.gamma, float)
        assert space.gamma[0] <= hp.gamma <= space.gamma[1]
        assert space.horizon_hours[0] <= candidate.horizon_hours <= space.horizon_hours[1]
        assert space.entry_band[0] <= rule.entry_band <= space.entry_band[1]
        assert rule.exit_band <= rule.entry_band and rule.exit_band <= space.exit_band[1]
        assert space.min_hold_hours[0] <= rule.min_hold_hours <= space.min_hold_hours[1]
        assert hp.anchored == (trial.params["train_window"] == "anchored")
        sides.add(rule.side)
        windows.add(trial.params["train_window"])
        cadences.add(rule.cadence_hours)
    assert sides == set(space.side)
    assert windows == {"sliding", "anchored"} and cadences == set(space.cadence_hours)


def test_a_range_of_one_value_fixes_a_lever():
    space = dataclasses.replace(
        small_params().tune.search_space,
        side=("long_short",),
        entry_band=(0.0, 0.0),
        exit_band=(0.0, 0.0),
        min_hold_hours=(1, 1),
        horizon_hours=(1, 1),
        cadence_hours=(1,),
        train_window=("sliding",),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    candidates = [tuning.suggest_params(study.ask(), space) for _ in range(10)]
    assert {c.rule for c in candidates} == {StrategyRule()}  # the seed's rule, every time
    assert not any(c.hp.anchored for c in candidates)


def test_a_window_that_is_neither_sliding_nor_anchored_is_refused():
    values = Candidate.from_dict(CANDIDATE).as_dict()
    with pytest.raises(ValueError, match="train_window: expected sliding or anchored"):
        tuning.candidate_of(values | {"train_window": "expanding"})


def test_objectives_by_hand():
    returns = np.array([0.1, -0.1, 0.05])
    held = np.array([0.01, -0.02, 0.02])
    annual = np.sqrt(24 * 365)
    assert tuning.objective_value("return_after_fees", returns) == pytest.approx(
        1.1 * 0.9 * 1.05 - 1
    )
    assert tuning.objective_value("sharpe_after_fees", returns) == pytest.approx(
        returns.mean() / returns.std(ddof=1) * annual
    )
    excess = returns - held
    assert tuning.objective_value("information_ratio", returns, held) == pytest.approx(
        excess.mean() / excess.std(ddof=1) * annual
    )
    # holding the baseline itself has no information ratio, whatever the market did
    assert tuning.objective_value("information_ratio", held, held) == 0.0
    assert tuning.objective_value("sharpe_after_fees", np.zeros(3)) == 0.0  # never trades


def test_the_ranking_objectives_reward_skill_not_exposure():
    """In a market that rises, cumulative return ranks a rule by its exposure: always in beats
    a rule that dodges the worst hours at a tenth of the size. The Sharpe ratio ranks the
    dodger first; the information ratio gives always-in (the baseline itself) 0 and the
    dodger at full size more."""
    rng = np.random.default_rng(0)
    market = rng.normal(0.0005, 0.01, size=2000)
    dodges = np.where(market > -0.02, market, 0.0)
    rules = {"always_in": market, "timid_dodger": dodges / 10}

    def best(objective):
        return max(rules, key=lambda k: tuning.objective_value(objective, rules[k], market))

    assert best("return_after_fees") == "always_in"
    assert best("sharpe_after_fees") == "timid_dodger"
    assert tuning.objective_value("information_ratio", market, market) == 0.0
    assert tuning.objective_value("information_ratio", dodges, market) > 1.0


def test_every_trial_runs_to_its_end(features, tmp_path):
    study = run_tune(features, f"sqlite:///{tmp_path}/s.db", n_trials=6)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    folds = {t.user_attrs["folds"] for t in study.trials}
    assert len(folds) == 1  # every trial walked every fold
    assert all("hourly_sharpe" in t.user_attrs for t in study.trials)


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
        assert tuning.complete_trials(study) == 5
        again = run_tune(features, storage, n_trials=5, name=name)
        assert len(again.trials) == 5  # nothing left to do
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def model_and_metrics(study, features) -> tuple[bytes, bytes]:
    """The chosen trial's final model (model.json's bytes) and its out-of-sample scorecard."""
    params, frame = small_params(), pd.read_parquet(features)
    candidate = tuning.best_candidate(study)
    trained = training.train_final(frame, params, candidate)
    result = evaluation.out_of_sample(frame, params, candidate)
    card = evaluation.scorecard(result, params, candidate)
    return bytes(trained.booster.save_raw("json")), json.dumps(card.as_dict()).encode()


@pytest.mark.slow
def test_two_workers_give_the_same_study_model_and_metrics_twice(features, tmp_path):
    """Two processes score each batch, in whatever order they finish; the study, the chosen
    trial and the outputs are the same on every run."""
    runs = []
    for run in ("a", "b"):
        # 12 trials: past TPE's 10 random start-up trials, so the last batch is TPE's, with the
        # constant liar
        study = run_tune(features, f"sqlite:///{tmp_path}/{run}.db", n_trials=12, workers=2)
        files = tuning.TuningFiles(tmp_path / run / "best.json", tmp_path / run / "trials.csv",
                                   tmp_path / run / "history.html")  # fmt: skip
        tuning.write_outputs(study, files, storage_url="sqlite://", objective="sharpe_after_fees")
        runs.append(
            (summary(study), files.best_params.read_bytes(), *model_and_metrics(study, features))
        )
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    assert runs[0][2] == runs[1][2]  # model.json, byte for byte
    assert runs[0][3] == runs[1][3]  # metrics.json
    points = [tuple(sorted(t[2].items())) for t in runs[0][0]]
    assert len(set(points)) == len(points)  # a batch's two asks draw two points
    other = run_tune(
        features, f"sqlite:///{tmp_path}/c.db", n_trials=6, workers=2, params=small_params(seed=7)
    )
    assert summary(other) != runs[0][0]


def test_a_batch_depends_on_the_history_alone(features, tmp_path):
    """The sampler is seeded by the trials so far: another process, asking of a copy of the
    same history, draws the same batch (a resumed run continues as an unbroken one would)."""
    params = small_params()
    # 10 trials: TPE's start-up is over, so the batch is TPE's own, with the constant liar
    run_tune(features, f"sqlite:///{tmp_path}/h.db", n_trials=10, name="h")
    batches = []
    for copy in ("x", "y"):
        target = f"sqlite:///{tmp_path}/{copy}.db"
        optuna.copy_study(from_study_name="h", from_storage=f"sqlite:///{tmp_path}/h.db",
                          to_storage=target)  # fmt: skip
        study = tuning.open_study(target, "h")
        batches.append([c.as_dict() for _, c in tuning.ask_batch(study, params, size=2)])
    assert batches[0] == batches[1]
    assert batches[0][0] != batches[0][1]  # the liar: two points, not one twice


def cli_tune(tmp_path, features, params_path, out="out", *extra):
    """`klinecast tune` of BTCUSDT in a checkout of its own at tmp_path/out (its features
    copied there); its outputs land in that checkout's reports/symbols/BTCUSDT/tune."""
    own = Layout(tmp_path / out).symbol("BTCUSDT")
    own.features.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(features, own.features)
    return [
        KLINECAST, "tune", "--params", params_path, "--root", tmp_path / out, "--no-progress",
        *extra,
    ]  # fmt: skip


def best_params_of(tmp_path, out="out") -> Path:
    return Layout(tmp_path / out).symbol("BTCUSDT").best_params


def test_separate_processes_on_one_storage_url(features, tmp_path):
    """Tuners on several machines sharing one study pass distinct --first-worker ids."""
    storage = f"sqlite:///{tmp_path}/shared.db"
    params_path = write_cli_params(tmp_path, storage, n_trials=8)
    procs = [
        subprocess.Popen(
            cli_tune(tmp_path, features, params_path, f"out{i}", "--first-worker", str(i)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    best = [json.loads(best_params_of(tmp_path, f"out{i}").read_text()) for i in range(2)]
    name = best[0]["study_name"]
    assert best[1]["study_name"] == name
    study = optuna.load_study(study_name=name, storage=storage)
    assert tuning.complete_trials(study) >= 8
    assert {t.user_attrs["stream"] for t in study.trials} == {0, 1}


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, reaped by init soon, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
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
    workers = children(proc.pid)
    assert len(workers) >= 2  # the scoring pool (and multiprocessing's resource tracker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the pool's workers leave with their tuner instead of waiting on their queue for ever
    deadline = time.monotonic() + 20
    while [pid for pid in workers if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)]
    name = optuna.get_all_study_summaries(storage)[0].study_name
    before = optuna.load_study(study_name=name, storage=storage)
    assert 0 < tuning.complete_trials(before) < 30
    done = subprocess.run(cli_tune(tmp_path, features, params_path), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name=name, storage=storage)
    assert tuning.complete_trials(study) == 30
    # the killed run's trial in flight was failed, not left running
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert best_params_of(tmp_path).is_file()


def test_outputs(features, tmp_path):
    study = run_tune(features, f"sqlite:///{tmp_path}/o.db", n_trials=6)
    out = tmp_path / "tune"
    result = tuning.write_outputs(
        study,
        tuning.TuningFiles.in_dir(out),
        storage_url="postgresql://me:hunter2@db/optuna",
        objective="sharpe_after_fees",
    )
    best = json.loads((out / "best_params.json").read_text())
    assert best == json.loads(json.dumps(result))
    assert set(best["params"]) == {
        "n_estimators", "max_depth", "learning_rate", "subsample", "colsample_bytree", "gamma",
        "look_back_days", "anchored", "horizon_hours", "side", "entry_band", "exit_band",
        "min_hold_hours", "cadence_hours", "n_features", "parallel_trees", "sample_weights",
        "booster", "reg_alpha", "reg_lambda", "primary",
    }  # fmt: skip
    assert best["value"] == study.best_value
    assert best["params"]["exit_band"] <= best["params"]["entry_band"]  # the exit it traded
    search = best["search"]
    assert search["trials_run"] == len(study.trials) == search["complete"] + search["failed"]
    # six trials, all TPE's random start-up ones: the variance is over every one of them
    sharpes = [t.user_attrs["hourly_sharpe"] for t in study.trials]
    assert search["variance_from"] == "random start-up trials" and search["variance_trials"] == 6
    assert search["sharpe_variance"] == pytest.approx(np.var(sharpes, ddof=1))
    # the deflated Sharpe: the chosen trial's in-sample moments against the best of 6 by luck
    chosen = stats.SharpeMoments.from_dict(study.best_trial.user_attrs)
    assert search["deflated_sharpe"] == pytest.approx(
        stats.deflated_sharpe(chosen, trials=6, sharpe_variance=np.var(sharpes, ddof=1))
    )
    assert search["deflated_sharpe"] < stats.probabilistic_sharpe_of(chosen)
    assert best["in_sample"]["sharpe"] == pytest.approx(study.best_value)
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
        assert all(
            f'"{name}"' in pages[plot] or f"{name}<" in pages[plot] for name in study.best_params
        )


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
    candidate = Candidate.from_dict(CANDIDATE | {"horizon_hours": horizon})
    runs = [
        tuning.in_sample_walk_forward(tuning.in_sample_rows(f, params), params, candidate)
        for f in (frame, poisoned)
    ]
    pd.testing.assert_frame_equal(runs[0].predictions, runs[1].predictions)
    assert runs[0].predictions.index[-1] == pd.Timestamp("2021-03-31 22:00", tz="UTC")


@pytest.mark.parametrize("anchored", [False, True])
def test_every_trial_is_scored_on_the_same_hours(features, anchored):
    """Whatever a trial's look-back or window, its folds test the same hours, so trials
    compare on equal terms."""
    params = small_params()
    rows = tuning.in_sample_rows(pd.read_parquet(features), params)
    low, high = params.tune.search_space.look_back_days
    runs = {
        days: tuning.in_sample_walk_forward(
            rows,
            params,
            Candidate.from_dict(CANDIDATE | {"look_back_days": days, "anchored": anchored}),
        )
        for days in (low, high)
    }
    short, long = (runs[low].predictions, runs[high].predictions)
    assert short.index.equals(long.index)
    assert short.index[0] == rows.index[0].floor("D") + pd.Timedelta(days=high)
    assert (short["fold"].to_numpy() == long["fold"].to_numpy()).all()
    changed = not np.allclose(short["prob_up"], long["prob_up"])
    assert changed != anchored  # an anchored window trains on everything before, either way


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
    slip = dataclasses.replace(base, backtest=dataclasses.replace(base.backtest, slippage_bps=5))
    assert tuning.study_name(slip, data_version="a") != name
    monkeypatch.setattr(tuning.study, "SCORING_VERSION", tuning.SCORING_VERSION + 1)
    assert tuning.study_name(base, data_version="a") != name  # trials scored another way


def _open_fresh(url: str, barrier) -> None:
    barrier.wait()  # every process opens the brand-new database at the same moment
    tuning.open_study(url, "race")


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


def test_the_search_never_scores_the_inner_hold_out_and_the_choice_is_confirmed_there(
    features, tmp_path
):
    """With 15 hold-out days the trials are scored before them; poisoning every return and
    label of the hold-out leaves every trial's value as it was, and only the hold-out figures
    move. The hold-out walks the search's 3 best trials forward and chooses among them."""
    params = small_params()
    params = dataclasses.replace(
        params, tune=dataclasses.replace(params.tune, holdout_days=15, holdout_candidates=3)
    )
    frame = pd.read_parquet(features)
    poisoned = frame.copy()
    held = poisoned.index >= pd.Timestamp("2021-03-17", tz="UTC")
    poisoned.loc[held, "next_return"] = -poisoned.loc[held, "next_return"]
    poisoned.loc[held, "label"] = 1.0 - poisoned.loc[held, "label"]
    poisoned.to_parquet(tmp_path / "poisoned.parquet")
    clean = run_tune(features, f"sqlite:///{tmp_path}/a.db", n_trials=4, params=params)
    dirty = run_tune(
        tmp_path / "poisoned.parquet", f"sqlite:///{tmp_path}/b.db", n_trials=4, params=params
    )
    assert [t.value for t in clean.trials] == [t.value for t in dirty.trials]
    picked = tuning.chosen(clean)
    assert picked.holdout["hours"] == 15 * 24 - 1  # the span's last hour has no next candle
    assert len(picked.holdout["candidates"]) == 3
    assert picked.in_sample["trial"] == clean.user_attrs["holdout"]["trial"]
    assert picked.holdout != tuning.chosen(dirty).holdout
    last_scored = pd.Timestamp("2021-03-17", tz="UTC")
    for trial in clean.trials:
        assert (
            trial.user_attrs["hours"]
            <= (last_scored - pd.Timestamp("2021-01-21", tz="UTC")).days * 24
        )


def test_the_deflated_sharpe_counts_every_study_on_the_span_and_the_random_trials_spread(
    features, tmp_path
):
    storage = f"sqlite:///{tmp_path}/one.db"
    first = run_tune(features, storage, n_trials=3, name="first")
    record = tuning.search_record(first)
    assert record.trials_run == 3 and record.variance_trials == 3
    assert record.variance_from == "random start-up trials"
    other = dataclasses.replace(small_params(), features=dataclasses.replace(
        small_params().features, indicators=small_params().features.indicators[:10]
    ))  # fmt: skip
    second = run_tune(features, storage, n_trials=2, params=other, name="second")
    assert tuning.search_record(second).trials_run == 5  # both studies searched these hours
    elsewhere = dataclasses.replace(small_params(), split=dataclasses.replace(
        small_params().split, in_sample_start=small_params().split.in_sample_start.replace(day=2)
    ))  # fmt: skip
    third = run_tune(features, storage, n_trials=2, params=elsewhere, name="third")
    assert tuning.search_record(third).trials_run == 2  # another span
    assert all(t.user_attrs["random"] for t in first.trials)  # fewer than 10: all random
