"""`klinecast registry migrate`: models published under the names of old (which changed with
the book's size) copied to the book's names, byte for byte, on a directory and on S3."""

import datetime as dt
import json

import yaml

from klinecast.cli import main
from klinecast.release import registry
from tests.support.helpers import write_params
from tests.support.model_fixtures import small_artifact

DAY = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def published(store, tmp_path, name: str, *, versions: int, promoted: int | None):
    """versions of name, each a different model, the promoted-th (0-based) production."""
    receipts = []
    for k in range(versions):
        folder = small_artifact(tmp_path / f"{name}-{k}", name, trees=k + 1)
        receipts.append(
            registry.publish(folder, store=store, model_name=name, promote=k == promoted,
                             now=DAY + dt.timedelta(hours=k))  # fmt: skip
        )
    return receipts


def test_a_book_of_several_moves_each_symbols_versions_and_pointer(
    registry_uri, store, tmp_path, capsys
):
    eth = published(store, tmp_path, "klinecast-1h-ethusdt", versions=2, promoted=1)
    btc = published(store, tmp_path, "klinecast-1h-btcusdt", versions=1, promoted=None)
    params = write_params(
        tmp_path / "params.yaml",
        {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}, "publish": {"registry": registry_uri}},
    )
    argv = ["registry", "migrate", "--params", str(params), "--old-name", "klinecast-1h"]
    assert main([*argv, "--dry-run"]) == 0
    assert registry.versions(store, "klinecast-ethusdt-1h") == []  # a dry run copies nothing
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ETHUSDT: klinecast-1h-ethusdt -> klinecast-ethusdt-1h: 2 version(s) copied, production " in out
    for old, new, receipts in (("klinecast-1h-ethusdt", "klinecast-ethusdt-1h", eth),
                               ("klinecast-1h-btcusdt", "klinecast-btcusdt-1h", btc)):  # fmt: skip
        assert registry.versions(store, new) == registry.versions(store, old)
        for receipt in receipts:  # byte for byte
            for name in (registry.MODEL_FILE, registry.METADATA_FILE, registry.COMPLETE_MARKER):
                key = f"versions/{receipt.version}/{name}"
                assert store.get(f"{new}/{key}") == store.get(f"{old}/{key}")
    pointer = registry.production(store, "klinecast-ethusdt-1h")
    assert pointer["version"] == eth[1].version
    assert pointer["uri"] == store.uri(f"klinecast-ethusdt-1h/versions/{eth[1].version}")
    production_uri = f"{registry_uri}/klinecast-ethusdt-1h/versions/PRODUCTION"
    assert registry.resolve_pointer(production_uri) == pointer["uri"]
    assert registry.production(store, "klinecast-btcusdt-1h") is None  # none to copy
    assert registry.production(store, "klinecast-1h-ethusdt")["version"] == eth[1].version  # kept

    assert main(argv) == 0  # again: nothing new to copy
    assert "0 version(s) copied" in capsys.readouterr().out


def test_a_book_that_grew_from_one_symbol_asks_which_production_wins(
    registry_uri, store, tmp_path, capsys
):
    """BTCUSDT alone was klinecast-btcusdt-1h; among several it became
    klinecast-btcusdt-1h-btcusdt; the book's name for it is klinecast-btcusdt-1h again."""
    alone = published(store, tmp_path, "klinecast-btcusdt-1h", versions=1, promoted=0)
    grown = published(store, tmp_path, "klinecast-btcusdt-1h-btcusdt", versions=1, promoted=0)
    eth = published(store, tmp_path, "klinecast-btcusdt-1h-ethusdt", versions=1, promoted=0)
    params = write_params(
        tmp_path / "params.yaml",
        {"data": {"symbols": ["BTCUSDT", "ETHUSDT"]}, "publish": {"registry": registry_uri}},
    )
    argv = ["registry", "migrate", "--params", str(params), "--old-name", "klinecast-btcusdt-1h"]
    assert main(argv) == 1  # BTCUSDT refused, ETHUSDT moved all the same
    captured = capsys.readouterr()
    assert (
        f"BTCUSDT: klinecast-btcusdt-1h already has production version {alone[0].version}, not "
        f"klinecast-btcusdt-1h-btcusdt's {grown[0].version}: nothing was copied"
    ) in captured.out
    assert "BTCUSDT not migrated (see above); the others were" in captured.err
    assert registry.production(store, "klinecast-btcusdt-1h")["version"] == alone[0].version
    assert registry.production(store, "klinecast-ethusdt-1h")["version"] == eth[0].version
    assert main([*argv, "--take-production"]) == 0
    assert registry.production(store, "klinecast-btcusdt-1h")["version"] == grown[0].version
    assert set(registry.versions(store, "klinecast-btcusdt-1h")) == {
        alone[0].version, grown[0].version
    }  # every version of both is kept


def test_a_book_of_one_btcusdt_keeps_its_name(tmp_path, capsys):
    store_uri = str(tmp_path / "registry")
    published(registry.open_store(store_uri), tmp_path, "klinecast-btcusdt-1h", versions=1, promoted=0)
    params = write_params(tmp_path / "params.yaml", {"publish": {"registry": store_uri}})
    argv = ["registry", "migrate", "--params", str(params), "--old-name", "klinecast-btcusdt-1h"]
    assert main(argv) == 0
    assert "BTCUSDT: nothing under klinecast-btcusdt-1h to move to klinecast-btcusdt-1h" in (
        capsys.readouterr().out
    )
    raw = yaml.safe_load(params.read_text())
    assert raw["publish"]["model_name"] == "klinecast-{symbol}-{interval}"
    assert json.loads((tmp_path / "registry/klinecast-btcusdt-1h/production.json").read_text())
