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
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.research import tuning

    config = load_params(params.path)
    study = tuning.tune(
        features_path=Path(features.path),
        params=config,
        storage_url=config.tune.storage,
        n_trials=config.tune.n_trials,
        first_worker=worker,
    )
    return study.study_name


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
    from pathlib import Path

    from klinecast.config import load_params
    from klinecast.research import tuning

    if len(set(study_names)) != 1:
        raise ValueError(f"the tuning workers ran different studies: {sorted(set(study_names))}")
    config = load_params(params.path)
    study = tuning.tune(  # resumes the finished study: no new trials
        features_path=Path(features.path),
        params=config,
        storage_url=config.tune.storage,
        n_trials=config.tune.n_trials,
    )
    files = tuning.TuningFiles(Path(best_params.path), Path(trials.path), Path(history.path))
    summary = tuning.write_outputs(
        study, files, storage_url=config.tune.storage, objective=config.tune.objective
    )
    best_params.metadata.update({"value": summary["value"], **summary["params"]})
    trials.metadata.update(summary["trials"])
