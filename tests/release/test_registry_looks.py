"""The look count of an out-of-sample span lives in the registry, with the data and code
version of each look; looks made at once all count, on a directory and on S3."""

import concurrent.futures
import datetime as dt

from klinecast.release import registry

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
SPAN = "2022-01-01 .. 2022-05-31"


def look(store, symbol="BTCUSDT", *, data="sha256:aa", at=NOW):
    return registry.record_look(
        store, symbol=symbol, span=SPAN, data_version=data, code_version="klinecast 1, scoring 3",
        now=at,
    )  # fmt: skip


def test_each_look_is_counted_with_its_data_and_code_version(store):
    assert look(store) == 1
    assert look(store, data="sha256:bb", at=NOW + dt.timedelta(hours=1)) == 2
    assert look(store, "ETHUSDT") == 1  # each symbol's hours are its own
    found = registry.looks(store, symbol="BTCUSDT", span=SPAN)
    assert [f.data_version for f in found] == ["sha256:aa", "sha256:bb"]
    assert found[0].code_version == "klinecast 1, scoring 3" and found[0].span == SPAN
    assert registry.versions(store, "btcusdt") == []  # no model is mistaken for a look


def test_looks_made_at_the_same_moment_all_count(store):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: look(store, data=f"sha256:{i}"), range(4)))
    assert len(registry.looks(store, symbol="BTCUSDT", span=SPAN)) == 4


def test_the_code_version_names_the_package_and_the_scoring():
    assert registry.code_version().startswith("klinecast ")
    assert ", scoring " in registry.code_version()
