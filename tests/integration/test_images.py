"""Each image's install steps, reproduced in a fresh venv (no podman here), and its entry point.

The commands are read from the Dockerfile's stages for the target, so the test follows it.
"""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def install_commands(dockerfile: Path, target: str) -> list[str]:
    """The pip commands of the RUNs that make the target's venv, in build order: the build
    stage, the target's dependencies, the project's wheel, then the target's own stage."""
    text = dockerfile.read_text().replace("\\\n", " ")
    parts = re.split(r"^FROM (\S+) AS (\S+)$", text, flags=re.M)
    stages = {parts[i + 1]: parts[i + 2] for i in range(1, len(parts) - 1, 3)}
    runs = [
        run
        for stage in ("build", f"{target}-deps", "wheel", target)
        for run in re.findall(r"^RUN (.*)$", stages[stage], re.M)
    ]
    return [
        c.strip() for run in runs for c in run.split("&&") if re.search(r"pip (install|wheel)", c)
    ]


@pytest.mark.parametrize(
    ("target", "entry_point", "answer"),
    [
        (
            "serving",
            ["python", "-m", "klinecast.serving.server", "--help"],
            "usage: python -m klinecast.serving.server",
        ),
        (
            "pipeline",
            ["klinecast", "validate-params", "--params", "params.yaml", "--params-only"],
            "validate-params: params.yaml is valid",
        ),
    ],
)
def test_install_step_in_a_fresh_venv_and_the_entry_point_starts(
    target, entry_point, answer, tmp_path
):
    from tests.support.helpers import explain, why_no_containers

    if why_no_containers() is None:
        pytest.skip("this machine builds the images for real (test_containers.py covers this)")
    src = tmp_path / "src"  # what the Dockerfile's COPY lines put in the build context
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.lock", "params.yaml"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheels = tmp_path / "wheels"
    for command in install_commands(REPO / "Dockerfile", target):
        command = command.replace("/opt/venv", str(venv)).replace("/tmp/wheels", str(wheels))
        argv = shlex.split(command.replace("--wheel-dir /wheels", f"--wheel-dir {wheels}"))
        argv = [
            a
            for arg in argv
            for a in (sorted(map(str, wheels.glob(Path(arg).name))) if "*" in arg else [arg])
        ]
        done = subprocess.run(argv, cwd=src, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, explain(done)
    binary = venv / "bin" / entry_point[0]
    started = subprocess.run(
        [str(binary), *entry_point[1:]], cwd=src, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, explain(started)
    assert answer in started.stdout, started.stdout
