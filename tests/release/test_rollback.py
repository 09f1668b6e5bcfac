"""Production's history: every move of a model's production pointer is a recorded decision
(who, when, from which version, why), and `rollback` returns to the version before in one step,
on a directory and on S3. `klinecast rollback SYMBOL` against a local endpoint speaking the
Kubernetes API: the registry moves, and the book's InferenceService serves the version before."""

import datetime as dt

import pytest

from klinecast.book import Book, parse_storage
from klinecast.cli import main
from klinecast.config import params_from_mapping
from klinecast.platform.inference_service import inference_service, placeholder_models
from klinecast.release import registry
from klinecast.release.registry import NoProductionVersion, RegistryError
from tests.support.helpers import write_params
from tests.support.kube_api_server import KubeApiServer
from tests.support.model_fixtures import small_artifact

DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
BOOK = Book(params_from_mapping({"data": {"symbols": SYMBOLS}}))
BTC, ETH = BOOK.model_name("BTCUSDT"), BOOK.model_name("ETHUSDT")
PATH = "/apis/serving.kserve.io/v1beta1/namespaces/klinecast/inferenceservices/klinecast"


def promote_three(store, tmp_path, name: str = "m") -> list[registry.PublishReceipt]:
    """Three versions promoted a day apart: the first, the second, the third in production."""
    return [
        registry.publish(
            small_artifact(tmp_path / f"{name}-{trees}", name, trees), store=store,
            model_name=name, promote=True, now=DAY + dt.timedelta(days=trees),
        )  # fmt: skip
        for trees in (1, 2, 3)
    ]


def test_rollback_steps_back_one_version_at_a_time_and_every_move_is_on_record(store, tmp_path):
    first, second, third = promote_three(store, tmp_path)
    assert registry.production(store, "m")["version"] == third.version
    back = registry.rollback(store, "m", by="ana", reason="p99 breach", now=DAY + dt.timedelta(days=9))
    assert back["version"] == second.version and back["uri"] == second.uri
    assert registry.production(store, "m")["version"] == second.version
    registry.rollback(store, "m", by="ana", reason="still bad", now=DAY + dt.timedelta(days=10))
    assert registry.production(store, "m")["version"] == first.version
    with pytest.raises(RegistryError, match=f"m: production {first.version} has no earlier"):
        registry.rollback(store, "m", by="ana", reason="again")
    assert registry.production(store, "m")["version"] == first.version  # as it was
    moves = [(d["action"], d["from"], d["version"], d["by"]) for d in registry.decisions(store, "m")]
    assert moves == [
        ("promote", None, first.version, "klinecast publish"),
        ("promote", first.version, second.version, "klinecast publish"),
        ("promote", second.version, third.version, "klinecast publish"),
        ("rollback", third.version, second.version, "ana"),
        ("rollback", second.version, first.version, "ana"),
    ]
    decisions = registry.decisions(store, "m")
    assert decisions[3]["reason"] == "p99 breach" and decisions[3]["at"].startswith("2026-01-10")
    assert decisions[0]["reason"] == "passed its gate"
    evaluation = registry.production(store, "m")["evaluation"]
    assert decisions[0]["evidence"] == decisions[4]["evidence"] == evaluation is not None


def test_publishing_production_again_moves_nothing_and_records_nothing(store, tmp_path):
    first, second, _ = promote_three(store, tmp_path)
    again = registry.publish(
        tmp_path / "m-3", store=store, model_name="m", promote=True, now=DAY + dt.timedelta(days=30)
    )  # a rerun: the same bytes, already production
    assert len(registry.decisions(store, "m")) == 3
    assert again.production["promoted_at"].startswith("2026-01-04")
    assert registry.rollback(store, "m", by="b", reason="r")["version"] == second.version


def test_a_rollback_to_a_version_no_longer_complete_changes_nothing(store, tmp_path):
    _, second, third = promote_three(store, tmp_path)
    store.delete([f"m/versions/{second.version}/{registry.COMPLETE_MARKER}"])
    with pytest.raises(RegistryError, match=f"{second.version} is no longer complete"):
        registry.rollback(store, "m", by="b", reason="r")
    assert registry.production(store, "m")["version"] == third.version
    assert len(registry.decisions(store, "m")) == 3


def test_a_migrated_model_rolls_back_to_its_own_copy(store, tmp_path):
    """`registry migrate` copies the pointer with its memory of URIs under the old name."""
    _, second, _ = promote_three(store, tmp_path, "old")
    registry.copy_model(store, old="old", new="new", take_production=False)
    back = registry.rollback(store, "new", by="b", reason="r")
    assert back["version"] == second.version
    assert back["uri"] == store.uri(f"new/versions/{second.version}") != second.uri


def test_no_production_version_is_no_rollback(store):
    with pytest.raises(NoProductionVersion, match="m has no production version to roll back"):
        registry.rollback(store, "m", by="b", reason="r")


@pytest.fixture()
def book(tmp_path):
    """A book of two on a directory registry: BTCUSDT with three promoted versions, ETHUSDT
    one; the InferenceService pinned to the newest of each, behind a local Kubernetes API."""
    where = tmp_path / "registry"
    store = registry.open_store(str(where))
    btc = promote_three(store, tmp_path, BTC)
    eth = registry.publish(
        small_artifact(tmp_path / "eth", ETH, 4), store=store, model_name=ETH, promote=True, now=DAY
    )
    isvc = inference_service(
        service_name="klinecast", models=placeholder_models(BOOK), image="example/serving:1",
        stale_after_minutes=15, namespace="klinecast",
    )  # fmt: skip
    isvc["metadata"]["resourceVersion"] = "7"
    params = write_params(
        tmp_path / "params.yaml", {"data": {"symbols": SYMBOLS}, "publish": {"registry": str(where)}}
    )
    return params, store, btc, eth, isvc


@pytest.fixture()
def kube(book, tmp_path, monkeypatch):
    """The book's InferenceService behind a local endpoint speaking the Kubernetes API, and a
    kubeconfig that points at it."""
    with KubeApiServer({PATH: book[-1]}) as server:
        server.point_at(tmp_path, monkeypatch)
        yield server


def served(kube, component: str) -> dict[str, str]:
    (container,) = kube.objects[PATH]["spec"][component]["containers"]
    (models,) = [e for e in container["env"] if e["name"] == "KLINECAST_MODELS"]
    return parse_storage(models["value"])


def test_klinecast_rollback_moves_the_registry_and_the_cluster_for_that_symbol_only(
    book, kube, capsys
):
    params, store, btc, eth, _ = book
    assert main(["deploy", "--params", str(params)]) == 0  # serving the newest of each
    assert served(kube, "predictor")["BTCUSDT"] == btc[2].uri
    capsys.readouterr()
    assert main(["rollback", "btcusdt", "--params", str(params), "--by", "ana"]) == 0
    out = capsys.readouterr().out
    assert f"rollback: BTCUSDT: production {btc[2].version} -> {btc[1].version} (ana)" in out
    for component in ("predictor", "transformer"):
        assert served(kube, component) == {"BTCUSDT": btc[1].uri, "ETHUSDT": eth.uri}
    assert registry.production(store, BTC)["version"] == btc[1].version
    assert registry.production(store, ETH)["version"] == eth.version  # untouched
    last = registry.decisions(store, BTC)[-1]
    assert (last["action"], last["by"], last["reason"]) == ("rollback", "ana", "operator rollback")


def test_rollback_where_the_cluster_refuses_says_the_registry_moved_and_what_to_run(
    book, kube, capsys
):
    params, store, btc, *_ = book
    kube.forbid_patch = True
    assert main(["rollback", "BTCUSDT", "--params", str(params)]) != 0
    error = capsys.readouterr().err
    assert f"the registry's production of BTCUSDT is {btc[1].version}, but the cluster" in error
    assert "run `klinecast deploy` when it answers" in error and "Traceback" not in error
    assert registry.production(store, BTC)["version"] == btc[1].version


def test_rollback_of_a_symbol_outside_the_book_is_refused(book, capsys):
    params, store, btc, *_ = book
    assert main(["rollback", "SOLUSDT", "--params", str(params)]) != 0
    assert "SOLUSDT is not in the book (BTCUSDT, ETHUSDT)" in capsys.readouterr().err
    assert registry.production(store, BTC)["version"] == btc[2].version


def test_an_operator_promotes_a_refused_version_on_record_and_rollback_undoes_it(store, tmp_path):
    production = registry.publish(
        small_artifact(tmp_path / "a", "m", 1), store=store, model_name="m", promote=True, now=DAY
    )
    refused = registry.publish(
        small_artifact(tmp_path / "b", "m", 2), store=store, model_name="m", promote=False, now=DAY
    )
    pointer = registry.promote_version(store, "m", refused.version, by="ana", reason="shadowed well")
    assert pointer["version"] == registry.production(store, "m")["version"] == refused.version
    last = registry.decisions(store, "m")[-1]
    assert (last["action"], last["from"], last["by"]) == ("promote", production.version, "ana")
    assert last["reason"] == "shadowed well" and last["evidence"] == pointer["evaluation"] is not None
    assert registry.rollback(store, "m", by="ana", reason="r")["version"] == production.version
    with pytest.raises(RegistryError, match=f"m has no complete version 'v1'; it has: {production.version}"):
        registry.promote_version(store, "m", "v1", by="ana", reason="r")
    assert registry.production(store, "m")["version"] == production.version


def test_klinecast_promote_then_rollback_on_the_registry_and_the_cluster(book, kube, capsys):
    params, store, btc, eth, _ = book
    argv = ["--params", str(params), "--by", "ana"]
    assert main(["promote", "BTCUSDT", btc[0].version, *argv]) == 0
    assert f"promote: BTCUSDT: production {btc[2].version} -> {btc[0].version} (ana)" in (
        capsys.readouterr().out
    )
    assert served(kube, "transformer") == {"BTCUSDT": btc[0].uri, "ETHUSDT": eth.uri}
    assert main(["rollback", "BTCUSDT", *argv]) == 0  # undoes the promotion
    assert served(kube, "predictor") == {"BTCUSDT": btc[2].uri, "ETHUSDT": eth.uri}
    assert main(["promote", "BTCUSDT", "v0-nosuch", *argv]) != 0
    assert "has no complete version 'v0-nosuch'" in capsys.readouterr().err
    assert registry.production(store, BTC)["version"] == btc[2].version
    actions = [(d["action"], d["reason"]) for d in registry.decisions(store, BTC)[3:]]
    assert actions == [("promote", "operator promotion"), ("rollback", "operator rollback")]
