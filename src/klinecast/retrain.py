"""Where a retrain goes: a KFP run, a GitLab pipeline trigger, or a local command."""

from __future__ import annotations

import os
import shlex
import subprocess

import requests

from klinecast.errors import KlinecastError

GITLAB_TOKEN_ENV = "GITLAB_TRIGGER_TOKEN"


def trigger(target: str, *, reason: str) -> str:
    """Fires target, one of `local:<command>`, `kfp:<host>`, `gitlab:<project API URL>@<ref>`.

    Returns what was started, for the log.

    Raises:
        KlinecastError: an unknown kind, or the target refused.
    """
    kind, _, where = target.partition(":")
    if kind == "local":
        done = subprocess.run(
            shlex.split(where),
            capture_output=True,
            text=True,
            env={**os.environ, "KLINECAST_RETRAIN_REASON": reason},
        )
        if done.returncode != 0:
            raise KlinecastError(
                f"retrain command {where!r} exited {done.returncode}: {done.stderr[-300:]}"
            )
        return f"local command {where!r}"
    if kind == "gitlab":
        project, _, ref = where.rpartition("@")
        token = os.environ.get(GITLAB_TOKEN_ENV)
        if not token or not project:
            raise KlinecastError(
                f"gitlab trigger needs ${GITLAB_TOKEN_ENV} and gitlab:<project API URL>@<ref>"
            )
        answer = requests.post(
            f"{project.rstrip('/')}/trigger/pipeline",
            data={"token": token, "ref": ref, "variables[RETRAIN_REASON]": reason},
            timeout=30,
        )
        if answer.status_code != 201:
            raise KlinecastError(
                f"GitLab refused the trigger: HTTP {answer.status_code} {answer.text[:200]}"
            )
        return f"GitLab pipeline {answer.json().get('id')} on {ref}"
    if kind == "kfp":
        from klinecast.kfp_runs import load_pipeline, submit

        return f"KFP {submit(load_pipeline('training'), host=where, run_name='retrain')}"
    raise KlinecastError(f"unknown retrain target {target!r}; expected local:, kfp: or gitlab:")
