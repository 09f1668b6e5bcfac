"""A Katib Experiment (kubeflow.org/v1beta1) generated from params.yaml.

The search space has one source of truth, params.yaml's tune.search_space; this module only
translates it. Built as plain data: the kubeflow-katib SDK pins protobuf<5, which conflicts with
kfp and kserve.
"""

from __future__ import annotations

import dataclasses

from klinecast.book import Book
from klinecast.config import Params, SearchSpace
from klinecast.platform.cluster import PIPELINE_ACCOUNT
from klinecast.platform.k8s import NAMESPACE, UID, resources
from klinecast.platform.names import S3_SECRET
from klinecast.research import tuning

#: the Python type of a lever's values -> Katib's parameter type
KATIB_TYPES = {int: "int", float: "double", str: "categorical"}


def trial_parameters() -> dict[str, tuple[str, str]]:
    """Every lever of tune.search_space -> (its Katib trial parameter name, Katib's type)."""
    return {
        key: (_camel(key), "categorical" if key in SearchSpace.CHOICES else KATIB_TYPES[kind])
        for key, kind in tuning.search_levers().items()
    }


def _camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(part.capitalize() for part in rest)


def feasible_space(values: tuple, kind: str, *, log: bool = False) -> dict:
    """Katib's feasibleSpace: a list of choices, or [min, max] as strings (on a log scale as
    `klinecast tune` draws them, where `log`)."""
    if kind == "categorical":
        return {"list": [str(v) for v in values]}
    scale = {"distribution": "logUniform"} if log else {}
    return {"min": str(values[0]), "max": str(values[1]), **scale}


def experiment(
    params: Params,
    symbol: str,
    *,
    image: str,
    name: str,
    namespace: str = NAMESPACE,
    parallel_trials: int = 2,
) -> dict:
    """TPE over tune.search_space, maximising tune.objective, every trial run to its end (as
    `klinecast tune` runs them: no early stopping).

    Each trial is a Job running `klinecast tune-trial --symbol <symbol>` with the trial's
    parameters; it prints `<objective>=<value>` for Katib's StdOut metrics collector. It pulls
    the features the symbol's model trains on first: its own, or every pooled symbol's.

    Args:
        params: the book's params.
    """
    tune = params.tune
    space = dataclasses.asdict(tune.search_space)
    levers = trial_parameters()
    flags = " ".join(
        f"--{key.replace('_', '-')}=${{trialParameters.{name}}}"
        for key, (name, _) in levers.items()
    )
    book = Book(params)
    pulled = book.symbols if tune.pooling == "pooled" else (symbol,)
    features = " ".join(str(book.files(s).features) for s in pulled)
    command = f"dvc pull {features} && klinecast tune-trial --symbol {symbol} {flags}"
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": tune.objective},
            "algorithm": {
                "algorithmName": "tpe",
                "algorithmSettings": [{"name": "random_state", "value": str(tune.seed)}],
            },
            "maxTrialCount": tune.n_trials,
            "parallelTrialCount": parallel_trials,
            "maxFailedTrialCount": 3,
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": [
                {
                    "name": name,
                    "parameterType": kind,
                    "feasibleSpace": feasible_space(
                        space[key], kind, log=key in SearchSpace.LOG_SCALE
                    ),
                }
                for key, (name, kind) in levers.items()
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": name, "reference": name, "description": f"tune.search_space.{key}"}
                    for key, (name, _) in levers.items()
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                            "spec": {
                                "restartPolicy": "Never",
                                "serviceAccountName": PIPELINE_ACCOUNT,
                                "containers": [
                                    {
                                        "name": "training-container",
                                        "image": image,
                                        "workingDir": "/app",
                                        "command": ["sh", "-c", command],
                                        "envFrom": [{"secretRef": {"name": S3_SECRET}}],
                                        "resources": resources("1", "1Gi", "2", "2Gi"),
                                        "securityContext": {
                                            "runAsNonRoot": True,
                                            "runAsUser": UID,
                                            "allowPrivilegeEscalation": False,
                                        },
                                    }
                                ],
                            },
                        },
                    },
                },
            },
        },
    }


def experiments(params: Params, *, image: str, namespace: str = NAMESPACE) -> list[dict]:
    """One Experiment per study of the book: each symbol's own model's (its own TPE and trial
    budget: a symbol as a search parameter would have TPE look for the best symbol, and share
    one budget among them), or the pooled model's one, whose trials score the book."""
    book, name = Book(params), params.tune.study_name
    if params.tune.pooling == "pooled":
        studies = {f"{name}-pooled-tune": book.symbols[0]}
    else:
        studies = {f"{name}-{symbol.lower()}-tune": symbol for symbol in book.symbols}
    return [
        experiment(params, symbol, image=image, name=study, namespace=namespace)
        for study, symbol in studies.items()
    ]
