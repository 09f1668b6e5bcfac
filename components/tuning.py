"""Tuning fanned out: N workers share one Optuna study, then one step collects the result.

The study's storage URL comes from $KLINECAST_OPTUNA_STORAGE, which the pipeline sets from a
Kubernetes Secret, so every worker pod joins the same PostgreSQL study.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Output

from components.image import COMPONENT


@dsl.component(**COMPONENT)
def tune_worker(params: Input[Artifact], features: Input[Dataset], worker: int) -> str:
    """Adds trials to the shared study until it holds tune.n_trials; returns the study's name."""
    import json
    import tempfile

    from klinecast.cli import run_stage

    with tempfile.TemporaryDirectory() as out:
        run_stage(
            "tune", "--params", params.path, "--features", features.path,
            "--out-dir", out, "--no-progress", "--first-worker", worker,
        )  # fmt: skip
        with open(f"{out}/best_params.json") as best:
            return json.load(best)["study_name"]


@dsl.component(**COMPONENT)
def collect_tuning(
    params: Input[Artifact],
    features: Input[Dataset],
    study_names: list[str],
    best_params: Output[Artifact],
    trials: Output[Dataset],
    history: Output[HTML],
):
    """Checks that the workers shared one study and writes its best params, trials and plot."""
    import json
    import shutil
    import tempfile

    from klinecast.cli import run_stage

    if len(set(study_names)) != 1:
        raise SystemExit(f"the tuning workers ran different studies: {sorted(set(study_names))}")
    with tempfile.TemporaryDirectory() as out:  # tune resumes the finished study: no new trials
        run_stage(
            "tune", "--params", params.path, "--features", features.path,
            "--out-dir", out, "--no-progress",
        )  # fmt: skip
        shutil.copy(f"{out}/best_params.json", best_params.path)
        shutil.copy(f"{out}/trials.csv", trials.path)
        shutil.copy(f"{out}/optimization_history.html", history.path)
        with open(best_params.path) as best:
            summary = json.load(best)
    best_params.metadata.update({"value": summary["value"], **summary["params"]})
    trials.metadata.update(summary["trials"])
