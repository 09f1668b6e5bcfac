"""Running the KFP pipelines of this package: their arguments, a local run, a submitted run.

`klinecast pipeline` and the retrain trigger (`kfp:<host>`) both submit through `submit`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from klinecast import environment
from klinecast.errors import KlinecastError
from klinecast.platform.kfp.task_logs import TaskLogs, without_colour


def _training():
    from klinecast.platform.kfp.training import training_pipeline

    return training_pipeline


def _refresh():
    from klinecast.platform.kfp.refresh import refresh_pipeline

    return refresh_pipeline


#: The pipelines by name (each imported only when asked for: it needs kfp).
PIPELINES = {"training": _training, "refresh": _refresh}
HERE = Path(__file__).parent


def load_pipeline(name: str):
    """The pipeline function `name` (training or refresh)."""
    return PIPELINES[name]()


def compiled(name: str) -> Path:
    """The checked-in compiled YAML of the pipeline `name` (package data)."""
    return HERE / f"{name}_pipeline.yaml"


def pipeline_arguments(
    pipeline, *, params_file: Path | None = None, overrides: Sequence[str] = ()
) -> dict:
    """A params file and NAME=VALUE overrides as the pipeline's arguments, checked against its
    inputs and the strict params loader before anything runs.

    Only the sections that changed are passed; the others keep the compiled-in defaults.

    Raises:
        KlinecastError: an override that is not NAME=VALUE or names no parameter.
        ParamsError: the resulting params are invalid.
    """
    import yaml

    from klinecast.config import load_params, params_from_mapping
    from klinecast.platform.kfp.params import (
        SECTIONS,
        apply_override,
        jsonable,
        params_from_sections,
    )

    inputs = pipeline.component_spec.inputs
    sections = {name: copy.deepcopy(inputs[name].default) for name in SECTIONS if name in inputs}
    own: dict = {}
    changed: set[str] = set()
    if params_file is not None:
        load_params(params_file, environ={})  # a clear error for a bad file before anything runs
        from_file = yaml.safe_load(Path(params_file).read_text())
        sections.update({k: v for k, v in from_file.items() if k in sections})
        changed |= set(from_file) & set(sections)
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep:
            raise KlinecastError(f"--set {item!r}: expected NAME=VALUE")
        value = yaml.safe_load(text) if text else None
        if name in inputs and name not in SECTIONS:
            own[name] = value
            continue
        try:
            apply_override(sections, name, value)
        except KeyError:
            known = sorted(n for n in inputs if n not in SECTIONS)
            raise KlinecastError(
                f"unknown pipeline parameter {name!r}: expected a params.yaml key like "
                f"tune.n_trials (sections {list(sections)}) or one of {known}"
            ) from None
        changed.add(name.split(".", 1)[0])
    params_from_mapping(params_from_sections(sections))  # a clear error before anything runs
    return own | {name: jsonable(sections[name]) for name in sorted(changed)}


def run_locally(pipeline, arguments: dict, *, pipeline_root: Path) -> tuple[Path, float]:
    """Runs the pipeline with kfp.local's SubprocessRunner (every task a subprocess here).

    Returns:
        The run's output directory and its duration in seconds.
    """
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root.resolve()),
        raise_on_error=True,
    )
    started = time.perf_counter()
    logs = TaskLogs(sys.stdout)
    try:
        with contextlib.redirect_stdout(logs):
            pipeline(**arguments)
    except RuntimeError as exc:
        failed = "; ".join(map(str, logs.failures())) or "no task's error was seen"
        raise KlinecastError(
            f"the local {pipeline.name} pipeline failed: {without_colour(str(exc))} {failed}"
        ) from None
    runs = sorted(pipeline_root.glob(f"{pipeline.name}-*"), key=os.path.getmtime)
    return (runs[-1] if runs else pipeline_root), time.perf_counter() - started


@dataclass(frozen=True)
class Submission:
    """Where the pipeline went: a KFP API server and the run (or recurring run) it created."""

    host: str
    run_name: str
    #: the run's id, or the recurring run's with a cron schedule
    run_id: str
    experiment: str
    cron: str | None = None

    def __str__(self) -> str:
        if self.cron:
            return f"recurring run {self.run_id} ({self.cron}) on {self.host}"
        return f"run {self.run_name} ({self.run_id}) in experiment {self.experiment} on {self.host}"


def submit(
    pipeline,
    *,
    host: str,
    package: Path | None = None,
    run_name: str,
    arguments: dict | None = None,
    experiment: str = "klinecast",
    namespace: str | None = None,
    service_account: str = "klinecast-pipeline",
    cron: str | None = None,
    image: str | None = None,
) -> Submission:
    """Compiles the pipeline (its tasks in image, default the components' image), or takes
    an already compiled package, and creates a run (or, with cron, a recurring run) on host.

    Raises:
        KlinecastError: KFP refused the run or could not be reached, with its answer.
    """
    import tempfile

    import kfp

    from klinecast.platform.kfp.compile import compile_pipeline

    name = run_name
    with tempfile.TemporaryDirectory() as tmp:
        if package is None:
            package = Path(tmp) / "pipeline.yaml"
            compile_pipeline(pipeline, package, image=image)
        package = str(package)
        try:
            with warnings.catch_warnings():  # "only works with KFP 2.0.0-beta.2 and later"
                warnings.simplefilter("ignore", FutureWarning)
                client = kfp.Client(host=host, namespace=namespace or "kubeflow")
            if cron:
                found = _experiment(client, experiment, namespace)
                job = client.create_recurring_run(
                    experiment_id=found.experiment_id,
                    job_name=name,
                    cron_expression=cron,
                    params=arguments or {},
                    pipeline_package_path=package,
                    service_account=service_account,
                )
                return Submission(host, name, job.recurring_run_id, experiment, cron)
            result = client.create_run_from_pipeline_package(
                package,
                arguments=arguments or {},
                run_name=name,
                experiment_name=experiment,
                namespace=namespace,
                service_account=service_account,
            )
        except Exception as exc:  # kfp_server_api, urllib3 and requests errors alike
            raise KlinecastError(f"KFP at {host} refused the run: {_reason(exc)}") from None
    return Submission(host, name, result.run_id, experiment)


def default_run_name(pipeline: str) -> str:
    """<pipeline>-<git sha>-<UTC time>; the sha is $CI_COMMIT_SHORT_SHA in GitLab CI."""
    sha = os.environ.get(environment.CI_COMMIT_SHORT_SHA) or _git_sha() or "nogit"
    return f"{pipeline}-{sha}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"


def _git_sha() -> str | None:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def _experiment(client, name: str, namespace: str | None):
    try:
        return client.get_experiment(experiment_name=name, namespace=namespace)
    except ValueError:  # kfp raises ValueError when no experiment has that name
        return client.create_experiment(name, namespace=namespace)


def _reason(exc: Exception) -> str:
    status, body = getattr(exc, "status", None), getattr(exc, "body", None)
    if status is not None:
        return f"HTTP {status}: {body or getattr(exc, 'reason', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
