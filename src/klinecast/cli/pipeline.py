"""`klinecast pipeline compile | run --local | submit`: the KFP pipelines in pipelines/."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from klinecast.errors import KlinecastError

PIPELINES = {"training": "training_pipeline", "refresh": "refresh_pipeline"}


def add_pipeline(commands) -> None:
    parser = commands.add_parser(
        "pipeline",
        help="compile, run locally (kfp.local) or submit the Kubeflow pipelines",
        description=(
            "The KFP v2 pipelines in pipelines/: `training` (data -> tuning over N workers "
            "sharing one PostgreSQL study -> evaluation -> gate -> publish -> deploy) and "
            "`refresh` (the hourly data refresh). Their parameters are params.yaml's sections, "
            "one JSON object each (data, features, ... trade), with params.yaml's values as "
            "defaults, plus the pipeline's own (tune_workers, namespace)."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")

    compile_ = actions.add_parser("compile", help="write pipelines/<name>_pipeline.yaml")
    _common(compile_, with_values=False)
    compile_.set_defaults(run=run_compile)

    run = actions.add_parser(
        "run",
        help="run a pipeline on this machine with kfp.local's SubprocessRunner",
        description=(
            "Run the same pipeline function locally: every component runs as a subprocess of "
            "this Python (base images are ignored). Outputs land under "
            "<pipeline-root>/<pipeline>-<timestamp>/<task>/. The Optuna study is "
            "$KLINECAST_OPTUNA_STORAGE, else tune.storage."
        ),
    )
    run.add_argument("--local", action="store_true", required=True, help="required: run locally")
    run.add_argument(
        "--pipeline-root",
        type=Path,
        default=Path("build/kfp-local"),
        help="where task outputs go (default: %(default)s)",
    )
    _common(run)
    run.set_defaults(run=run_local)

    submit = actions.add_parser(
        "submit",
        help="compile and submit a run (or a recurring run) to a KFP API server",
        description=(
            "Compile, then create a run through kfp.Client in --experiment, named "
            "<pipeline>-<git sha>-<UTC time>. With --cron, create a recurring run instead "
            "(KFP cron has six fields, seconds first: '0 5 * * * *' is minute 5 of every hour)."
        ),
    )
    submit.add_argument(
        "--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080"
    )
    submit.add_argument("--experiment", default="klinecast", help="default: %(default)s")
    submit.add_argument("--namespace", help="Kubeflow profile namespace (multi-user installs)")
    submit.add_argument("--run-name", help="default: <pipeline>-<git sha>-<UTC time>")
    submit.add_argument("--cron", help="create a recurring run on this KFP cron schedule")
    submit.add_argument(
        "--service-account",
        default="klinecast-pipeline",
        help="Kubernetes service account the run's pods use; manifests/base gives it the RBAC "
        "the deploy step needs (default: %(default)s)",
    )
    _common(submit)
    submit.set_defaults(run=run_submit)


def _common(parser, *, with_values: bool = True) -> None:
    parser.add_argument(
        "--pipeline",
        choices=sorted(PIPELINES),
        default="training",
        help="which pipeline (default: %(default)s)",
    )
    parser.add_argument(
        "--pipelines-dir",
        type=Path,
        default=Path("pipelines"),
        help="the pipelines package (default: %(default)s)",
    )
    if with_values:
        parser.add_argument(
            "--params",
            type=Path,
            help="take every pipeline parameter from this params file (default: the compiled-in "
            "params.yaml values)",
        )
        parser.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="one params.yaml key by its dotted name (YAML value), e.g. --set "
            "tune.n_trials=80, or a pipeline parameter, e.g. --set tune_workers=4; repeatable",
        )


def load_pipeline(args):
    """The pipeline function, imported from --pipelines-dir (pipelines/ beside components/)."""
    package = args.pipelines_dir.resolve()
    if not (package / f"{PIPELINES[args.pipeline]}.py").is_file():
        raise KlinecastError(
            f"{package} has no {PIPELINES[args.pipeline]}.py; run from the repository root "
            "or pass --pipelines-dir"
        )
    sys.path.insert(0, str(package.parent))
    try:
        module = importlib.import_module(f"{package.name}.{PIPELINES[args.pipeline]}")
    finally:
        sys.path.remove(str(package.parent))
    return getattr(module, PIPELINES[args.pipeline])


def arguments(args, pipeline) -> dict:
    """--params and --set as pipeline arguments, checked against the pipeline's inputs and
    the strict params loader before anything runs."""
    import copy

    import yaml

    from klinecast.config import load_params, params_from_mapping
    from klinecast.pipeline_params import (
        SECTIONS,
        apply_override,
        jsonable,
        params_from_sections,
    )

    inputs = pipeline.component_spec.inputs
    sections = {name: copy.deepcopy(inputs[name].default) for name in SECTIONS if name in inputs}
    own: dict = {}
    changed: set[str] = set()
    if args.params is not None:
        load_params(args.params)  # a clear error for a bad file before anything runs
        from_file = yaml.safe_load(args.params.read_text())
        sections.update({k: v for k, v in from_file.items() if k in sections})
        changed |= set(from_file) & set(sections)
    for item in args.overrides:
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
    params_from_mapping(params_from_sections(sections))
    return own | {name: jsonable(sections[name]) for name in sorted(changed)}


def run_compile(args) -> int:
    from klinecast.pipeline_yaml import compile_pipeline

    pipeline = load_pipeline(args)
    out = args.pipelines_dir / f"{PIPELINES[args.pipeline]}.yaml"
    compile_pipeline(pipeline, out)
    print(f"pipeline compile: {pipeline.name} -> {out}")
    return 0


def run_local(args) -> int:
    from kfp import local

    pipeline = load_pipeline(args)
    values = arguments(args, pipeline)
    args.pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(args.pipeline_root.resolve()),
        raise_on_error=True,
    )
    started = time.perf_counter()
    try:
        pipeline(**values)
    except RuntimeError as exc:
        raise KlinecastError(f"the local {args.pipeline} pipeline failed: {exc}") from None
    runs = sorted(args.pipeline_root.glob(f"{pipeline.name}-*"), key=os.path.getmtime)
    print(
        f"pipeline run --local: {pipeline.name} succeeded in {time.perf_counter() - started:.1f} s;"
        f" outputs in {runs[-1] if runs else args.pipeline_root}"
    )
    return 0


def run_name(pipeline: str) -> str:
    sha = os.environ.get("CI_COMMIT_SHORT_SHA") or _git_sha() or "nogit"
    return f"{pipeline}-{sha}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"


def _git_sha() -> str | None:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def run_submit(args) -> int:
    import tempfile

    import kfp

    from klinecast.pipeline_yaml import compile_pipeline

    pipeline = load_pipeline(args)
    values = arguments(args, pipeline)
    name = args.run_name or run_name(args.pipeline)
    with tempfile.TemporaryDirectory() as tmp:
        package = str(Path(tmp) / "pipeline.yaml")
        compile_pipeline(pipeline, package)
        try:
            with warnings.catch_warnings():  # "only works with KFP 2.0.0-beta.2 and later"
                warnings.simplefilter("ignore", FutureWarning)
                client = kfp.Client(host=args.host, namespace=args.namespace or "kubeflow")
            if args.cron:
                experiment = _experiment(client, args)
                job = client.create_recurring_run(
                    experiment_id=experiment.experiment_id,
                    job_name=name,
                    cron_expression=args.cron,
                    params=values,
                    pipeline_package_path=package,
                    service_account=args.service_account,
                )
                print(f"pipeline submit: recurring run {job.recurring_run_id} ({args.cron})")
                return 0
            result = client.create_run_from_pipeline_package(
                package,
                arguments=values,
                run_name=name,
                experiment_name=args.experiment,
                namespace=args.namespace,
                service_account=args.service_account,
            )
        except Exception as exc:  # kfp_server_api, urllib3 and requests errors alike
            raise KlinecastError(f"KFP at {args.host} refused the run: {_reason(exc)}") from None
    print(f"pipeline submit: run {name} ({result.run_id}) in experiment {args.experiment}")
    return 0


def _experiment(client, args):
    try:
        return client.get_experiment(experiment_name=args.experiment, namespace=args.namespace)
    except ValueError:  # kfp raises ValueError when no experiment has that name
        return client.create_experiment(args.experiment, namespace=args.namespace)


def _reason(exc: Exception) -> str:
    status, body = getattr(exc, "status", None), getattr(exc, "body", None)
    if status is not None:
        return f"HTTP {status}: {body or getattr(exc, 'reason', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
