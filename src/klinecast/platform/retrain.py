"""Where a retrain goes: a KFP run, a GitLab pipeline trigger, or a local command.

Each is a named function; `trigger` picks one from a target string (the monitor's --trigger).
Each is told which symbol's model decayed, and why. The training it starts is the book's (the
gate's multiplicity control runs across the book), named for the symbol that asked.
"""

from __future__ import annotations

import os
import shlex
import subprocess

import requests

from klinecast import environment
from klinecast.errors import KlinecastError

GITLAB_TOKEN_ENV = environment.GITLAB_TRIGGER_TOKEN


def run_local_command(command: str, *, reason: str, symbol: str) -> str:
    """Runs command (with $KLINECAST_RETRAIN_SYMBOL and $KLINECAST_RETRAIN_REASON set); what
    was started, for the log."""
    done = subprocess.run(
        shlex.split(command),
        capture_output=True,
        text=True,
        env={**os.environ, environment.RETRAIN_REASON: reason, environment.RETRAIN_SYMBOL: symbol},
    )
    if done.returncode != 0:
        raise KlinecastError(
            f"retrain command {command!r} exited {done.returncode}: {done.stderr[-300:]}"
        )
    return f"local command {command!r}"


def trigger_gitlab_pipeline(where: str, *, reason: str, symbol: str) -> str:
    """POSTs GitLab's pipeline trigger; where is `<project API URL>@<ref>`, the token comes
    from $GITLAB_TRIGGER_TOKEN."""
    project, _, ref = where.rpartition("@")
    token = os.environ.get(GITLAB_TOKEN_ENV)
    if not token or not project:
        raise KlinecastError(
            f"gitlab trigger needs ${GITLAB_TOKEN_ENV} and gitlab:<project API URL>@<ref>"
        )
    answer = requests.post(
        f"{project.rstrip('/')}/trigger/pipeline",
        data={
            "token": token, "ref": ref,
            "variables[RETRAIN_REASON]": reason, "variables[RETRAIN_SYMBOL]": symbol,
        },  # fmt: skip
        timeout=30,
    )
    if answer.status_code != 201:
        raise KlinecastError(
            f"GitLab refused the trigger: HTTP {answer.status_code} {answer.text[:200]}"
        )
    return f"GitLab pipeline {answer.json().get('id')} on {ref}"


def submit_training_run(host: str, *, reason: str, symbol: str) -> str:
    """Submits the compiled training pipeline (the package's YAML) to the KFP API at host, as
    a run named retrain-<symbol>."""
    from klinecast.platform.kfp.runs import compiled, submit

    name = f"retrain-{symbol.lower()}"
    return f"KFP {submit(None, host=host, run_name=name, package=compiled('training'))}"


#: target kind -> the function it names
TRIGGERS = {
    "local": run_local_command,
    "gitlab": trigger_gitlab_pipeline,
    "kfp": submit_training_run,
}


def trigger(target: str, *, reason: str, symbol: str) -> str:
    """Fires target for symbol, one of `local:<command>`, `kfp:<host>`, `gitlab:<project API
    URL>@<ref>`.

    Returns what was started, for the log.

    Raises:
        KlinecastError: an unknown kind, or the target refused.
    """
    kind, _, where = target.partition(":")
    if kind not in TRIGGERS:
        raise KlinecastError(f"unknown retrain target {target!r}; expected local:, kfp: or gitlab:")
    return TRIGGERS[kind](where, reason=reason, symbol=symbol)
