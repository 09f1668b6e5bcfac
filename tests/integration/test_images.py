"""Each image's install step, reproduced in a fresh venv (no Docker here), and its entry point.

The build stage's commands are read from the Dockerfile itself, so the test follows it.
"""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def install_commands(dockerfile: Path) -> list[str]:
    """The `/opt/venv/bin/pip install ...` commands of the build stage's RUNs, in order."""
    text = dockerfile.read_text().replace("\\\n", " ")
    build = text.split("\nFROM ", 2)[1]  # the first stage
    runs = re.findall(r"^RUN (.*)$", build, re.M)
    return [c.strip() for run in runs for c in run.split("&&") if "pip install" in c]


@pytest.mark.parametrize(
    ("dockerfile", "entry_point"),
    [
        ("serving/Dockerfile", ["python", "-m", "klinecast.serving.server", "--help"]),
        (
            "Dockerfile",
            ["klinecast", "validate-params", "--params", "params.yaml", "--params-only"],
        ),
    ],
)
def test_install_step_in_a_fresh_venv_and_the_entry_point_starts(dockerfile, entry_point, tmp_path):
    from integration.test_containers import why_not

    if why_not() is None:
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
    for command in install_commands(REPO / dockerfile):
        argv = shlex.split(command.replace("/opt/venv", str(venv)))
        done = subprocess.run(argv, cwd=src, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    binary = venv / "bin" / entry_point[0]
    started = subprocess.run(
        [str(binary), *entry_point[1:]], cwd=src, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr[-3000:]
    assert "usage:" in started.stdout or "is valid" in started.stdout
