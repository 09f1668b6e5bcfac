import json

import pytest

from klinecast.release.metadata import ArtifactMetadata, MetadataError
from tests.support.model_fixtures import scorecard, small_metadata

#: metadata.json's keys: the contract with serving, the trader and older artifacts.
KEYS = {
    "model_name", "created_at", "symbol", "interval", "feature_names", "min_history",
    "hyperparams", "look_back_days", "horizon_hours", "strategy", "complexity", "train_start",
    "train_end", "train_rows", "backtest", "data_version", "metrics", "libraries",
}  # fmt: skip


def test_write_then_read_gives_the_same_metadata_with_the_contract_keys(tmp_path):
    metadata = small_metadata(metrics=scorecard(trades=3))
    metadata.write(tmp_path / "metadata.json")
    assert set(json.loads((tmp_path / "metadata.json").read_text())) == KEYS
    assert ArtifactMetadata.read(tmp_path / "metadata.json") == metadata


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("strategy"), "lacks 'strategy' .*retrain it"),
        (lambda d: d["hyperparams"].pop("gamma"), "hyperparameters lack \\['gamma'\\]"),
        (lambda d: d.update(min_history="many"), "malformed: invalid literal"),
        (lambda d: d["strategy"].update(side="sideways"), "malformed: side: expected one of"),
        (lambda d: d["metrics"]["significance"].pop("max_p_value"), "metrics lacks 'max_p_value'"),
        (
            lambda d: d["metrics"]["significance"]["declared"]["trend_200d"].pop("p_value"),
            "metrics lacks 'p_value'",
        ),
        (lambda d: d["metrics"]["model"].update(trades=None), "metrics is malformed: a value"),
    ],
)
def test_a_broken_file_names_what_is_wrong(tmp_path, change, message):
    values = small_metadata(metrics=scorecard()).as_dict()
    change(values)
    (tmp_path / "metadata.json").write_text(json.dumps(values))
    with pytest.raises(MetadataError, match=message):
        ArtifactMetadata.read(tmp_path / "metadata.json")


def test_a_file_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "metadata.json").write_text("{")
    with pytest.raises(MetadataError, match="is not valid JSON"):
        ArtifactMetadata.read(tmp_path / "metadata.json")
