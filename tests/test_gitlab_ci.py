""".gitlab-ci.yml through gitlab-ci-local (offline): GitLab's schema, the DAG, `rules: changes`,
and the lint and test jobs run for real with the shell executor.

The test job runs `make test`, the README's test command. Here it runs with PYTEST_ADDOPTS
naming a few tests (the mirror over HTTP, a PostgreSQL ledger, the config), because the whole
suite is what is running this very test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.helpers import explain
from tests.support.paths import REPO, SHARED

TOOLS = REPO / "build" / "ci-tools" / "node_modules" / ".bin"
# Services need containers; the shell executor runs none, so locally the machine's (or the
# test session's) PostgreSQL and Redis stand in for the job's `postgres` and `redis` services.
TEST_JOB_SUBSET = " ".join(
    [
        "-rA",  # a PASSED line per test in the summary, whether make test runs workers or not
        "tests/test_config.py",
        "tests/test_cli.py::test_stages_end_to_end_on_the_mirror",
        "tests/trader/test_trader.py::test_ledger_schema_migrates_once_and_keeps_rows",
        "tests/serving/test_online_sync.py::test_the_sync_command",
    ]
)
# The subset is the test job's alone: the lint job's `make validate-manifests` runs its own
# tests, and a --variable would reach both jobs.
LOCAL_OVERRIDE = f"""\
include:
  - local: .gitlab-ci.yml
test:
  services: []
  variables:
    PYTEST_ADDOPTS: "{TEST_JOB_SUBSET}"
"""


def git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=ci@klinecast", "-c", "user.name=ci", *args],
        cwd=project, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("gitlab"))


def copy_project(root: Path) -> Path:
    """A git clone-alike of the working tree whose origin/main is its HEAD, ../shared beside it."""
    if not (TOOLS / "gitlab-ci-local").exists():
        pytest.fail("gitlab-ci-local is missing: `make setup` installs it into build/ci-tools")
    project = root / "klinecast"
    files = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    for name in files:
        if (REPO / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, project / name)
    (root / "shared").symlink_to(SHARED)
    (project / ".gitlab-ci-local.yml").write_text(LOCAL_OVERRIDE)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "the working tree")
    git(project, "remote", "add", "origin", "https://gitlab.example.com/team/klinecast.git")
    git(project, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(project, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return project


def gitlab_ci_local(project: Path, *args: str, timeout: int = 120):
    env = os.environ | {"PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["gitlab-ci-local", *args], cwd=project, env=env,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def variable_args(variables: dict[str, str]) -> list[str]:
    return [arg for name, value in variables.items() for arg in ("--variable", f"{name}={value}")]


def run_jobs(project: Path, names: list[str], variables: dict[str, str]) -> str:
    """Runs jobs for real on this machine, in this venv (no second install); their output."""
    args = [
        "--file", ".gitlab-ci-local.yml",
        "--force-shell-executor",  # the jobs name images; this machine has no Docker
        *variable_args({"BIN": str(REPO / ".venv" / "bin"), "SETUP": "", **variables}),
        *names,
    ]  # fmt: skip
    done = gitlab_ci_local(project, *args, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, explain(done)
    return output


def jobs(project: Path, **variables: str) -> dict[str, dict]:
    """The pipeline gitlab-ci-local would run from the working tree: job -> listing."""
    args = ["--list-json", "--ignore-predefined-vars", "CI_PIPELINE_SOURCE"]
    done = gitlab_ci_local(project, *args, *variable_args(variables))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "json schema validated" in done.stderr  # GitLab's own schema, checked offline
    return {job["name"]: job for job in json.loads(done.stdout)}


def when(project: Path, **variables: str) -> dict[str, str]:
    return {name: job["when"] for name, job in jobs(project, **variables).items()}


def test_the_dag(project):
    listed = jobs(project)
    stages = [job["stage"] for job in listed.values()]
    assert stages == ["lint", "test", "build", "build", "pipeline", "deploy"]
    needs = {name: [n["job"] for n in job["needs"] or []] for name, job in listed.items()}
    assert needs == {
        "lint": [],
        "test": [],
        "build-pipeline-image": ["lint", "test"],
        "build-serving-image": ["lint", "test"],
        "pipeline": ["build-pipeline-image"],
        "deploy": ["build-pipeline-image", "build-serving-image"],
    }
    assert listed["deploy"]["when"] == "manual"


@pytest.mark.parametrize(
    ("changed", "runs"),
    [
        ("README.md", False),
        ("manifests/overlays/prod/kustomization.yaml", False),
        ("params.yaml", True),
        ("data.dvc", True),
        ("src/klinecast/research/features.py", True),
        ("src/klinecast/platform/kfp/model_components.py", True),
        ("src/klinecast/platform/kfp/training.py", True),
    ],
)
def test_the_pipeline_job_runs_when_what_the_model_is_made_of_changes(project, changed, runs):
    assert when(project)["pipeline"] == "never"  # nothing changed since origin/main
    path = project / changed
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# changed\n")
        listed = when(project)
    finally:
        path.write_bytes(original)
    assert listed["pipeline"] == ("on_success" if runs else "never")
    assert listed["lint"] == listed["test"] == "on_success"


def test_a_schedule_reruns_the_pipeline_without_building(project):
    listed = when(project, CI_PIPELINE_SOURCE="schedule")
    assert listed["pipeline"] == "on_success"
    assert listed["build-pipeline-image"] == listed["deploy"] == "never"


def test_the_pipeline_job_stays_on_the_default_branch(project):
    git(project, "checkout", "-q", "-b", "feature")
    try:
        (project / "params.yaml").write_text((project / "params.yaml").read_text() + "\n#\n")
        assert when(project)["pipeline"] == "never"
    finally:
        git(project, "checkout", "-q", "--", "params.yaml")
        git(project, "checkout", "-q", "main")


def test_a_schema_error_is_caught(project, tmp_path):
    broken = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
    broken["lint"]["needs"] = "test"  # needs: is a list
    shutil.copytree(project, tmp_path / "broken", symlinks=True)
    (tmp_path / "broken" / ".gitlab-ci.yml").write_text(yaml.safe_dump(broken))
    done = gitlab_ci_local(tmp_path / "broken", "--list")
    assert done.returncode != 0
    assert "needs" in done.stdout + done.stderr


def test_every_credential_comes_from_ci_variables():
    config = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    secretive = ("KEY", "SECRET", "PASSWORD", "TOKEN", "CREDENTIAL")
    literals = [
        (where, name, value)
        for where, block in [("", config)] + list(config.items())
        if isinstance(block, dict)
        for name, value in (block.get("variables") or {}).items()
        if any(word in name for word in secretive) and not str(value).startswith("$")
    ]
    assert literals == []
    text = (REPO / ".gitlab-ci.yml").read_text()
    build = config[".kaniko"]["script"]
    assert any('"$CI_REGISTRY_IMAGE/$IMAGE:$CI_COMMIT_SHORT_SHA"' in line for line in build)
    # each build job makes the Dockerfile's target of its image's name, and only that
    assert any('--target "$IMAGE" --skip-unused-stages' in line for line in build)
    targets = re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    images = {config[job]["variables"]["IMAGE"] for job in config if job.startswith("build-")}
    assert images == {"pipeline", "serving"} and images <= set(targets)
    assert "$CI_REGISTRY_PASSWORD" in text and "kubectl apply -k build/deploy" in text
    image = config["pipeline"]["variables"]["KLINECAST_PIPELINE_IMAGE"]
    assert image == "$CI_REGISTRY_IMAGE/pipeline:$CI_COMMIT_SHORT_SHA"


@pytest.mark.e2e
def test_the_lint_and_test_jobs_pass(project, postgres, redis):
    variables = {
        "KLINECAST_TEST_POSTGRES": postgres,
        "KLINECAST_TEST_REDIS": redis,
    }
    output = run_jobs(project, ["lint", "test"], variables)
    assert "PASS  lint" in output and "PASS  test" in output
    assert "lint $ make lint" in output and "lint $ make validate-manifests" in output
    assert "test $ make test" in output
    assert "tests/platform/test_kustomize.py" in output  # the manifest validation ran in lint
    lint = [line for line in output.splitlines() if line.startswith("lint >")]
    assert not [line for line in lint if "test_trader.py" in line]  # ... and only that
    # the test job ran ruff and the chosen tests, against the given PostgreSQL
    assert "test > All checks passed!" in output
    assert "PASSED tests/trader/test_trader.py::test_ledger_schema_migrates_once_and_keeps_rows" in output
    assert "PASSED tests/serving/test_online_sync.py::test_the_sync_command" in output  # given Redis
    assert "FAILED" not in output


@pytest.mark.integration
@pytest.mark.e2e
def test_the_pipeline_job_pulls_the_data_and_submits_the_commits_image(
    tmp_path, mirror_server, moto_s3
):
    """New data on main: the job pulls it from S3 (moto_server) and submits a KFP run (a local
    endpoint speaking the KFP v2beta1 API) whose every task runs the commit's pipeline image."""
    from tests.support.helpers import create_remote_bucket
    from tests.support.kfp_api_server import KfpApiServer

    project = copy_project(tmp_path)
    bin_dir = REPO / ".venv" / "bin"
    env = os.environ | moto_s3 | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for argv in (
        ["klinecast", "ingest", "--base-url", mirror_server.url, "--end", "2021-06-30"],
        ["dvc", "add", "--quiet", "data/raw"],
    ):
        subprocess.run(argv, cwd=project, env=env, check=True, capture_output=True)
    git(project, "add", "-A")
    assert git(project, "status", "--porcelain", "data.dvc")  # another data version
    git(project, "commit", "-qm", "new data")  # origin/main stays behind: data.dvc changed
    create_remote_bucket(moto_s3)
    subprocess.run(["dvc", "push", "data.dvc"], cwd=project, env=env, check=True)
    shutil.rmtree(project / "data" / "raw")
    shutil.rmtree(project / ".dvc" / "cache")

    with KfpApiServer() as kfp:
        output = run_jobs(project, ["pipeline"], moto_s3 | {"KFP_HOST": kfp.url})
        (run,) = kfp.bodies("POST", "/apis/v2beta1/runs")
    assert "PASS  pipeline" in output
    assert sorted((project / "data" / "raw").rglob("*.zip"))  # pulled back from S3
    sha = git(project, "rev-parse", "--short=8", "HEAD").strip()
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    (image,) = images
    assert image.endswith(f"/pipeline:{sha}") and "$" not in image
    assert run["service_account"] == "klinecast-pipeline"
    assert run["display_name"].startswith(f"training-{sha}")


def test_pipeline_submit_without_a_kfp_host_stops_before_any_work():
    done = subprocess.run(
        ["make", "-s", "pipeline-submit", "SETUP=", "KFP_HOST="],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pipeline-submit: set KFP_HOST to the KFP API URL" in done.stderr


def test_a_given_postgres_that_does_not_answer_is_an_error(monkeypatch):
    from tests.support.helpers import free_port
    from tests.support.pg_server import GIVEN_ENV, postgres_url

    dead = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"
    monkeypatch.setenv(GIVEN_ENV, dead)
    with pytest.raises(RuntimeError, match="names a PostgreSQL that does not answer"):
        with postgres_url(free_port()):
            pass
