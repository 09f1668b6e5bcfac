"""`klinecast pipeline compile | run --local | submit`: the KFP pipelines (klinecast.platform.kfp)."""

from __future__ import annotations

import os
from pathlib import Path

from klinecast import environment
from klinecast.platform.kfp.runs import PIPELINES

#: CI compiles and submits with the commit's image.
IMAGE_ENV = environment.PIPELINE_IMAGE


def add_pipeline(commands) -> None:
    parser = commands.add_parser(
        "pipeline",
        help="compile, run locally (kfp.local) or submit the Kubeflow pipelines",
        description=(
            "The KFP v2 pipelines of klinecast.platform.kfp: `training` (the book's data -> the "
            "pool -> per symbol tuning, evaluation, train, gate, publish -> the book's deploy) and "
            "`refresh` (the hourly data refresh). Their parameters are params.yaml's sections, "
            "one JSON object each (data, features, ... trade), with params.yaml's values as "
            "defaults, plus the pipeline's own (namespace)."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")

    compile_ = actions.add_parser(
        "compile", help="write the pipeline's YAML (default: the package's <name>_pipeline.yaml)"
    )
    _common(compile_, with_values=False)
    compile_.add_argument("--out", type=Path, help="where to write it instead")
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
    from klinecast.platform.k8s import PIPELINE_IMAGE

    parser.add_argument(
        "--image",
        default=os.environ.get(IMAGE_ENV) or PIPELINE_IMAGE,
        help=f"the image every task runs (default: ${IMAGE_ENV}, else %(default)s)",
    )
    parser.add_argument(
        "--pipeline",
        choices=sorted(PIPELINES),
        default="training",
        help="which pipeline (default: %(default)s)",
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
            "tune.n_trials=80, or a pipeline parameter, e.g. --set namespace=research; repeatable",
        )


def load_pipeline(args):
    from klinecast.platform.kfp.runs import load_pipeline

    return load_pipeline(args.pipeline)


def arguments(args, pipeline) -> dict:
    from klinecast.platform.kfp.runs import pipeline_arguments

    return pipeline_arguments(pipeline, params_file=args.params, overrides=args.overrides)


def run_compile(args) -> int:
    from klinecast.platform.kfp.compile import compile_pipeline
    from klinecast.platform.kfp.runs import compiled

    pipeline = load_pipeline(args)
    out = args.out or compiled(args.pipeline)
    compile_pipeline(pipeline, out, image=args.image)
    print(f"pipeline compile: {pipeline.name} ({args.image}) -> {out}")
    return 0


def run_local(args) -> int:
    from klinecast.platform.kfp.runs import run_locally

    pipeline = load_pipeline(args)
    outputs, seconds = run_locally(
        pipeline, arguments(args, pipeline), pipeline_root=args.pipeline_root
    )
    print(
        f"pipeline run --local: {pipeline.name} succeeded in {seconds:.1f} s; outputs in {outputs}"
    )
    return 0


def run_submit(args) -> int:
    from klinecast.platform.kfp.runs import default_run_name, submit

    pipeline = load_pipeline(args)
    submission = submit(
        pipeline,
        host=args.host,
        run_name=args.run_name or default_run_name(args.pipeline),
        arguments=arguments(args, pipeline),
        experiment=args.experiment,
        namespace=args.namespace,
        service_account=args.service_account,
        cron=args.cron,
        image=args.image,
    )
    print(f"pipeline submit: {submission}")
    return 0
