"""The challenger in the registry: a version that passes its gate beside a production version
goes into shadow instead of production, its pointer is followed as production's is, and every
change of it (named, promoted, rejected, replaced) is a recorded decision, on a directory and on
S3."""

import dataclasses
import shutil

import pytest

from klinecast.config import PublishParams
from klinecast.release import registry
from klinecast.release.gate import Condition, Gate
from klinecast.release.promotion import SHADOW_LOOK, publish_artifact
from klinecast.release.registry import NoProductionVersion, RegistryError
from tests.support.model_fixtures import small_artifact


def verdict(passed: bool) -> Gate:
    return Gate((Condition("excess_return", passed, "over every baseline"),))


def publish(registry_uri, tmp_path, trees: int, *, passed: bool, **challenger):
    """Publishes the trees-tree model as the publish stage does, with the verdict given."""
    params = PublishParams(registry=registry_uri)
    params = dataclasses.replace(
        params, challenger=dataclasses.replace(params.challenger, **challenger)
    )
    artifact = small_artifact(tmp_path / f"m-{trees}", "m", trees)
    return publish_artifact(artifact, params, model_name="m", verdict=verdict(passed))


def test_a_passing_version_beside_production_shadows_it_and_the_first_is_promoted(
    registry_uri, store, tmp_path
):
    first = publish(registry_uri, tmp_path, 1, passed=True)
    assert first.receipt.promoted and not first.shadowed  # no champion to shadow
    assert first.outcome == "promoted to production"
    second = publish(registry_uri, tmp_path, 2, passed=True)
    assert not second.receipt.promoted and second.shadowed
    assert second.outcome == "the challenger, in shadow beside production"
    assert registry.production(store, "m")["version"] == first.receipt.version
    shadow = registry.challenger(store, "m")
    assert shadow["version"] == second.receipt.version and shadow["uri"] == second.receipt.uri
    assert second.as_dict()["shadow"] == SHADOW_LOOK  # the receipt says it is a further look
    assert "shadow" not in first.as_dict()
    again = publish(registry_uri, tmp_path, 2, passed=True)  # a rerun: its shadow goes on
    assert again.shadowed and registry.challenger(store, "m")["since"] == shadow["since"]
    champion = publish(registry_uri, tmp_path, 1, passed=True)  # production's bytes again
    assert champion.receipt.promoted and not champion.shadowed
    actions = [(d["action"], d["version"]) for d in registry.decisions(store, "m")]
    assert actions == [("promote", first.receipt.version), ("challenge", second.receipt.version)]


def test_a_refused_version_is_shadowed_only_by_the_param_and_only_beside_production(
    registry_uri, store, tmp_path
):
    alone = publish(registry_uri, tmp_path, 1, passed=False, shadow_refused=True)
    assert not alone.shadowed and registry.challenger(store, "m") is None  # nothing to shadow
    publish(registry_uri, tmp_path, 2, passed=True)
    refused = publish(registry_uri, tmp_path, 3, passed=False)
    assert not refused.shadowed and refused.outcome == "NOT promoted (gate failed)"
    shadowed = publish(registry_uri, tmp_path, 4, passed=False, shadow_refused=True)
    assert shadowed.shadowed
    (decision,) = [d for d in registry.decisions(store, "m") if d["action"] == "challenge"]
    assert decision["reason"].startswith("refused by its gate; shadowed for live evidence")


def test_without_shadow_a_passing_version_is_promoted_at_once(registry_uri, store, tmp_path):
    publish(registry_uri, tmp_path, 1, passed=True)
    second = publish(registry_uri, tmp_path, 2, passed=True, shadow_passed=False)
    assert second.receipt.promoted and registry.challenger(store, "m") is None
    assert registry.production(store, "m")["version"] == second.receipt.version


def test_promoting_the_challenger_moves_production_and_ends_its_shadow(
    registry_uri, store, tmp_path
):
    first = publish(registry_uri, tmp_path, 1, passed=True)
    second = publish(registry_uri, tmp_path, 2, passed=True)
    evidence = {"hours": 168, "lower": -0.0001}
    pointer = registry.promote_challenger(store, "m", by="rule", reason="did not do worse",
                                          evidence=evidence)  # fmt: skip
    assert pointer["version"] == second.receipt.version
    assert pointer["earlier"][0]["version"] == first.receipt.version  # rollback goes back to it
    assert registry.challenger(store, "m") is None
    last = registry.decisions(store, "m")[-1]
    assert (last["action"], last["from"], last["by"]) == ("promote", first.receipt.version, "rule")
    assert last["evidence"] == evidence
    with pytest.raises(RegistryError, match="m has no challenger to promote"):
        registry.promote_challenger(store, "m", by="rule", reason="again", evidence={})


def test_rejecting_the_challenger_keeps_production_and_is_on_record(registry_uri, store, tmp_path):
    first = publish(registry_uri, tmp_path, 1, passed=True)
    second = publish(registry_uri, tmp_path, 2, passed=True)
    registry.end_challenger(store, "m", by="ana", reason="worse", evidence={"upper": -0.01})
    assert registry.challenger(store, "m") is None
    assert registry.production(store, "m")["version"] == first.receipt.version
    last = registry.decisions(store, "m")[-1]
    assert (last["action"], last["version"], last["by"]) == ("reject", second.receipt.version, "ana")
    with pytest.raises(RegistryError, match="m has no challenger to reject"):
        registry.end_challenger(store, "m", by="ana", reason="again")


def test_an_operators_promotion_of_the_challengers_version_ends_its_shadow(
    registry_uri, store, tmp_path
):
    publish(registry_uri, tmp_path, 1, passed=True)
    second = publish(registry_uri, tmp_path, 2, passed=True)
    registry.promote_version(store, "m", second.receipt.version, by="ana", reason="by hand")
    assert registry.challenger(store, "m") is None


def test_a_newer_challenger_replaces_the_one_in_shadow(registry_uri, store, tmp_path):
    publish(registry_uri, tmp_path, 1, passed=True)
    second = publish(registry_uri, tmp_path, 2, passed=True)
    third = publish(registry_uri, tmp_path, 3, passed=True)
    assert registry.challenger(store, "m")["version"] == third.receipt.version
    last = registry.decisions(store, "m")[-1]
    assert (last["action"], last["from"]) == ("challenge", second.receipt.version)


def test_a_storage_uri_of_the_version_challenger_follows_its_pointer(registry_uri, store, tmp_path):
    uri = f"{registry_uri}/m/versions/{registry.CHALLENGER_VERSION}"
    assert registry.follows_pointer(uri)
    publish(registry_uri, tmp_path, 1, passed=True)
    with pytest.raises(NoProductionVersion, match="no challenger of m in"):
        registry.resolve_pointer(uri)
    second = publish(registry_uri, tmp_path, 2, passed=True)
    assert registry.resolve_pointer(uri) == second.receipt.uri
    production = f"{registry_uri}/m/versions/{registry.PRODUCTION_VERSION}"
    assert registry.resolve_pointer(production) != second.receipt.uri


def test_a_challenger_whose_decision_cannot_be_written_is_not_named(tmp_path):
    root = tmp_path / "registry"
    publish(str(root), tmp_path, 1, passed=True)
    shutil.rmtree(root / "m" / registry.DECISIONS)
    (root / "m" / registry.DECISIONS).write_text("a file where the decisions go")
    with pytest.raises(RegistryError):
        publish(str(root), tmp_path, 2, passed=True)
    assert registry.challenger(registry.open_store(str(root)), "m") is None
