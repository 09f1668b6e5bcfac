"""What several test modules share: paths, ports, params files, and the serving and ledger
helpers. Test modules import from here, never from one another or from a conftest."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

from klinecast.config import Params
from klinecast.research.strategy import StrategyRule
from tests.support.paths import REPO

#: The model name the integration tests serve.
NAME = "klinecast-test"
MIN_HISTORY = Params().features.min_history
#: The served model's rule: both sides, bands (hysteresis), a minimum hold and a decision every
#: 2 hours, so the trader's book and the clock matter.
RULE = StrategyRule(
    "long_short", entry_band=0.02, exit_band=0.005, min_hold_hours=3, cadence_hours=2
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_params(path: Path, overrides: dict) -> Path:
    """Writes the repo's params.yaml to path with nested overrides, e.g. {"data": {"start": ...}}."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        raw[section].update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_cli_params(tmp_path: Path, storage: str, n_trials: int) -> Path:
    """params.yaml for the CLI with the small modeling setup (model_fixtures.small_params)."""
    from tests.support.model_fixtures import small_params

    params = small_params()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["split"] = {k: str(v) for k, v in dataclasses.asdict(params.split).items()}
    raw["backtest"]["step_days"] = params.backtest.step_days
    space = {k: list(v) for k, v in dataclasses.asdict(params.tune.search_space).items()}
    raw["features"] = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(params.features).items()
    }
    raw["tune"].update(
        n_trials=n_trials, storage=storage, search_space=space,
        holdout_days=params.tune.holdout_days,
    )  # fmt: skip
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def v1(serving, body, **kwargs) -> requests.Response:
    """POST a V1 predict to the servers' transformer."""
    return requests.post(
        f"{serving.transformer_url}/v1/models/{NAME}:predict", json=body, timeout=30, **kwargs
    )


def v2(serving, body, **kwargs) -> requests.Response:
    """POST a V2 infer to the servers' transformer."""
    return requests.post(
        f"{serving.transformer_url}/v2/models/{NAME}/infer", json=body, timeout=30, **kwargs
    )


def drop_ledger(url: str) -> None:
    """Removes every ledger table (a shared PostgreSQL database starts clean)."""
    import sqlalchemy as sa

    with sa.create_engine(url).begin() as c:
        c.execute(sa.text("DROP VIEW IF EXISTS prediction_outcomes"))
        for name in ("predictions", "orders", "positions", "outcomes", "equity", "state", "halts",
                     "reconciliations", "failures", "paper_orders", "shadow_calls",
                     "shadow_outcomes", "schema_version",
                     "klinecast_ledger_version"):  # fmt: skip
            c.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))


def table(url: str, name: str) -> list[dict]:
    """Every row of a ledger table."""
    import sqlalchemy as sa

    with sa.create_engine(url).connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.text(f"SELECT * FROM {name}"))]


@contextmanager
def table_locked(url: str, name: str, mode: str):
    """Another session holds the table: the trader waits at its next access of that mode (an
    EXCLUSIVE lock lets reads pass and holds writes; ACCESS EXCLUSIVE holds both)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(sa.text(f"LOCK TABLE {name} IN {mode} MODE"))
        try:
            yield
        finally:
            transaction.rollback()
    engine.dispose()


def create_remote_bucket(moto_s3: dict) -> None:
    """The bucket of .dvc/config's remote, on moto_server."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=moto_s3["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket="klinecast-data")


def why_no_containers() -> str | None:
    """Why this machine cannot build and run the images with podman, or None."""
    if os.geteuid() != 0:
        return "root (podman builds and runs the containers here as root)"
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        return "podman, or apt-get to install it"
    return None


def explain(done, *, tail: int = 1500) -> str:
    """Why a finished subprocess failed: its command, exit code and error lines first (a
    `klinecast ...: error:` line names the failing step's own error), then the end of its
    stderr and stdout."""
    output = f"{done.stdout or ''}\n{done.stderr or ''}"
    errors = [line for line in output.splitlines() if ": error:" in line or "Error:" in line]
    argv = done.args if isinstance(done.args, str) else " ".join(map(str, done.args))
    return "\n".join(
        [
            f"{argv} exited {done.returncode}",
            *errors[-5:],
            "--- stderr (end) ---",
            (done.stderr or "")[-tail:],
            "--- stdout (end) ---",
            (done.stdout or "")[-tail:],
        ]
    )


#: The paper broker's cost of a change of position (the fee and the slippage of params.yaml),
#: which the shadow book pays too.
PAPER_COST = 0.001 + 0.0001


def offline_book(candles, artifact, hours, *, cost: float = PAPER_COST):
    """A model's offline backtest over the replayed hours, as the trader books them: its
    probabilities, its rule's positions, and each hour's return after costs of a book that holds
    on after the last hour (its close is not paid yet).

    Returns:
        (probabilities, positions, returns), one of each per hour.
    """
    import numpy as np
    import pandas as pd

    from klinecast.release import registry
    from klinecast.research import strategy
    from klinecast.research.backtest import strategy_returns
    from klinecast.serving.offline import offline_probabilities

    rule = registry.read_artifact_metadata(artifact).rule
    proba = offline_probabilities(candles, artifact).reindex(hours).to_numpy()
    decided = (hours + pd.Timedelta(hours=1)).hour.to_numpy()  # the rule's cadence reads them
    position, _ = strategy.positions(proba, rule, decision_hours=decided)
    closes = candles["close"]
    next_return = (closes.shift(-1) / closes - 1.0).reindex(hours).to_numpy()
    returns = strategy_returns(position, next_return, cost=cost)
    returns[-1] += cost * abs(position[-1])
    return proba, np.asarray(position), returns


def served_forecasts(candles, artifact: Path, ends, *, window: int, log_dir: Path) -> list[dict]:
    """The forecasts the real model servers answer for `artifact`, one V1 candle request per
    end row (the window of candles ending at it), each asserted to be a 200."""
    from klinecast.serving.client import v1_request
    from klinecast.serving.local import LocalServing

    answers = []
    with LocalServing(NAME, str(artifact), free_port(), free_port(), log_dir=log_dir) as served:
        session = requests.Session()
        for end in ends:
            body = v1_request(candles.iloc[end - window + 1 : end + 1])
            answer = session.post(
                f"{served.transformer_url}/v1/models/{NAME}:predict", json=body, timeout=30
            )
            assert answer.status_code == 200, answer.text
            answers.append(answer.json()["predictions"][0])
    return answers
