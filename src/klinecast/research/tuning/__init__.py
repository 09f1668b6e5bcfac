"""Tuning: an Optuna study over the search space, scored by walk-forward on the in-sample span,
after costs.

- `space`: what a trial draws (the classifier, its window, its label's horizon and the rule);
- `scoring`: how a candidate is scored (tune.objective over purged in-sample folds);
- `study`: the study itself (its name, storage, seeded batches and worker processes);
- `outputs`: what it leaves (best_params.json, trials.csv, Optuna's plots).

The names below are the stages' and the adapters' entry points.
"""

from klinecast.research.tuning.outputs import (
    BestParams,
    SearchRecord,
    TuningFiles,
    chosen,
    search_record,
    write_outputs,
)
from klinecast.research.tuning.scoring import (
    IR_BASELINE,
    SCORING_VERSION,
    check_in_sample_span,
    data_span,
    in_sample_rows,
    in_sample_summary,
    in_sample_walk_forward,
    look_back_shortfall,
    objective_value,
    pooled_in_sample,
    score,
    score_holdout,
    score_pooled,
    search_params,
)
from klinecast.research.tuning.space import (
    candidate_of,
    capped_exit_band,
    search_levers,
    suggest_params,
)
from klinecast.research.tuning.study import (
    STORAGE_RETRY,
    TrialOutcome,
    ask_batch,
    best_candidate,
    complete_trials,
    fail_abandoned_trials,
    open_study,
    study_name,
    tune,
)

__all__ = [
    "IR_BASELINE",
    "SCORING_VERSION",
    "STORAGE_RETRY",
    "BestParams",
    "SearchRecord",
    "TrialOutcome",
    "TuningFiles",
    "ask_batch",
    "best_candidate",
    "candidate_of",
    "capped_exit_band",
    "check_in_sample_span",
    "chosen",
    "complete_trials",
    "data_span",
    "fail_abandoned_trials",
    "in_sample_rows",
    "in_sample_summary",
    "in_sample_walk_forward",
    "look_back_shortfall",
    "objective_value",
    "open_study",
    "pooled_in_sample",
    "score",
    "score_holdout",
    "score_pooled",
    "search_params",
    "search_levers",
    "search_record",
    "study_name",
    "suggest_params",
    "tune",
    "write_outputs",
]
