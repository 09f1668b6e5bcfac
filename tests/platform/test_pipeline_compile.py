"""The KFP pipelines compile, match their committed YAML and take params.yaml's keys."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from klinecast.cli import main
from klinecast.config import Params
from klinecast.platform.kfp.compile import compile_pipeline
from klinecast.platform.kfp.params import SECTIONS, jsonable, params_from_sections
from klinecast.platform.kfp.refresh import refresh_pipeline
from klinecast.platform.kfp.runs import compiled
from klinecast.platform.kfp.training import training_pipeline
from tests.support.paths import REPO

PIPELINES = {"training": training_pipeline, "refresh": refresh_pipeline}
EXTRA = {"training": {"namespace"}, "refresh": set()}
TRAINING, REFRESH = compiled("training"), compiled("refresh")


def documents(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_committed_yaml_is_current_byte_for_byte(name, tmp_path):
    fresh = tmp_path / f"{name}.yaml"
    compile_pipeline(PIPELINES[name], fresh)
    committed = compiled(name)
    assert committed.read_text() == fresh.read_text(), (
        f"{committed.name} is stale: run `klinecast pipeline compile --pipeline {name}`"
    )


def test_compiling_twice_gives_identical_bytes_where_kfp_alone_does_not(tmp_path):
    # kfp's header lists a dict default in protobuf's order, which varies between processes
    # (hash seeds); klinecast writes it from the sorted body.
    script = (
        "import sys; from pathlib import Path;"
        "from kfp import compiler; from klinecast.platform.kfp.compile import compile_pipeline;"
        "from klinecast.platform.kfp.training import training_pipeline as p;"
        "compile_pipeline(p, Path(sys.argv[1])); compiler.Compiler().compile(p, sys.argv[2])"
    )
    ours, theirs = set(), set()
    for seed in range(6):
        out = [tmp_path / f"ours-{seed}.yaml", tmp_path / f"kfp-{seed}.yaml"]
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        subprocess.run(
            [sys.executable, "-c", script, *map(str, out)], check=True, env=env
        )
        ours.add(out[0].read_text())
        theirs.add(out[1].read_text())
    assert len(ours) == 1
    assert len(theirs) > 1  # what the rewrite is for


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_parameters_are_params_yaml_sections_with_its_values_as_defaults(name):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    inputs = PIPELINES[name].component_spec.inputs
    assert set(inputs) == set(raw) | EXTRA[name]
    assert set(SECTIONS) == set(raw)  # the sections come from the typed config
    for section, values in raw.items():
        assert inputs[section].default == jsonable(values), section
        assert inputs[section].type == "Dict"  # a JSON field the KFP UI lets a user edit


def test_a_new_params_key_needs_no_edit_in_pipelines_or_components(tmp_path):
    """The validate-params component takes whole sections; its inputs are the config's."""
    spec, _ = documents(TRAINING)
    inputs = spec["components"]["comp-validate-params"]["inputDefinitions"]["parameters"]
    assert set(inputs) == set(SECTIONS)
    assert {inputs[name]["parameterType"] for name in SECTIONS} == {"STRUCT"}


def test_sections_survive_the_trip_through_kfp():
    """KFP carries numbers in structs as doubles and has no null: both come back as they were."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    through_kfp = jsonable(raw)
    through_kfp["tune"]["n_trials"] = float(raw["tune"]["n_trials"])
    through_kfp["tune"]["search_space"]["n_estimators"] = [100.0, 400.0]
    assert through_kfp["data"]["end"] == "" and isinstance(through_kfp["tune"]["n_trials"], float)
    assert params_from_sections(through_kfp) == raw
    from klinecast.config import params_from_mapping

    assert params_from_mapping(params_from_sections(through_kfp)) == Params()


def test_training_graph_runs_the_book_then_each_symbol_then_deploys_the_book():
    spec, platform = documents(TRAINING)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {
        "validate-params", "ingest", "reference", "for-loop-1", "pool", "for-loop-2",
        "publish", "report", "portfolio", "deploy",
    }  # fmt: skip
    for loop in ("for-loop-1", "for-loop-2"):  # a branch per symbol, so many at once
        items = root[loop]["parameterIterator"]["items"]["inputParameter"]
        assert items.endswith("validate-params-Output")
        assert root[loop]["iteratorPolicy"] == {
            "parallelismLimit": Params().tune.symbols_in_parallel
        }
    data = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(data) == {"candles", "features"}
    assert root["pool"]["dependentTasks"] == ["for-loop-1", "validate-params"]
    research = spec["components"]["comp-for-loop-2"]["dag"]["tasks"]
    assert set(research) == {"tune", "evaluate", "train"}
    # then the book: every symbol's model published at once (its gate among the book's),
    # the reports, the portfolio and one deploy, after publishing
    assert root["publish"]["dependentTasks"] == ["for-loop-2", "validate-params"]
    for task in ("report", "portfolio"):
        assert set(root[task]["dependentTasks"]) == {"for-loop-2", "publish", "validate-params"}
    assert set(root["deploy"]["dependentTasks"]) == {"publish", "validate-params"}
    assert set(root["portfolio"]["inputs"]["artifacts"]) == {
        "params", "predictions", "metrics_json", "best_params", "receipts"
    }
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for shared in ("exec-pool", "exec-tune"):
        (secret,) = executors[shared]["secretAsEnv"]
        assert secret["secretName"] == "klinecast-postgres"
        assert secret["keyToEnv"] == [
            {"envVar": "KLINECAST_OPTUNA_STORAGE", "secretKey": "optuna-url"}
        ]
    for s3 in ("exec-evaluate", "exec-publish", "exec-deploy"):  # (evaluate records its look)
        assert {s["secretName"] for s in executors[s3]["secretAsEnv"]} == {"klinecast-s3"}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.com/klinecast/pipeline:0.1.0"}
    commands = [e["container"]["command"] for e in spec["deploymentSpec"]["executors"].values()]
    assert not any("pip install" in " ".join(c) for c in commands)  # kfp is in the image


def test_every_stage_has_a_component_that_calls_its_stage_function():
    """The components are adapters over klinecast.stages: each stage's component imports its
    function, so the pipelines can do what `dvc repro` does (pooled and cross-asset models too)."""
    spec, _ = documents(TRAINING)
    names = {n.removeprefix("comp-") for n in spec["components"]}
    sources = {
        n.removeprefix("exec-"): " ".join(e["container"]["command"])
        for n, e in spec["deploymentSpec"]["executors"].items()
    }
    for stage in ("ingest", "candles", "features", "pool", "tune", "evaluate", "train",
                  "publish", "report", "portfolio"):  # fmt: skip
        assert stage in names
        assert f"from klinecast.stages.{stage} import" in sources[stage], stage
    assert "from klinecast.stages.candles import reference" in sources["reference"]


def test_compile_command_writes_the_yaml(tmp_path, capsys):
    out = tmp_path / "refresh.yaml"
    assert main(["pipeline", "compile", "--pipeline", "refresh", "--out", str(out)]) == 0
    assert out.read_text() == REFRESH.read_text()
    assert "klinecast-refresh" in capsys.readouterr().out


def test_unknown_or_invalid_arguments_fail_before_anything_runs(tmp_path, capsys):
    base = ["pipeline", "run", "--local", "--pipeline-root", str(tmp_path / "root")]
    assert main([*base, "--set", "tune_n_trails=3"]) == 1
    assert "unknown pipeline parameter 'tune_n_trails'" in capsys.readouterr().err
    assert main([*base, "--set", "tune.n_trails=3"]) == 1
    assert "tune.n_trails: unknown key" in capsys.readouterr().err
    assert main([*base, "--set", "split.in_sample_end=2017-01-01"]) == 1
    assert "split.in_sample_end" in capsys.readouterr().err
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").iterdir())


def test_the_refresh_ends_by_writing_the_online_store():
    spec, platform = documents(REFRESH)
    root = spec["root"]["dag"]["tasks"]
    assert root["for-loop-1"]["parameterIterator"]["items"]["inputParameter"].endswith(
        "validate-params-Output"
    )  # every symbol's candles and features, then one sync of the book
    assert set(root["features-sync"]["dependentTasks"]) == {"for-loop-1", "validate-params"}
    assert not root["features-sync"]["cachingOptions"].get("enableCache", False)
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        "exec-features-sync"
    ]
    (config,) = executor["configMapAsEnv"]
    assert config["configMapName"] == "klinecast-online"
    assert {k["envVar"] for k in config["keyToEnv"]} >= {
        "KLINECAST_REDIS",
        "KLINECAST_FEAST_REGISTRY",
    }
    assert {s["secretName"] for s in executor["secretAsEnv"]} == {"klinecast-s3"}
    # Redis's NetworkPolicy admits the sync's pods by this label: the KFP step carries it too
    from klinecast.platform.feature_store import redis_network_policy

    admitted = [
        peer["podSelector"]["matchLabels"]
        for peer in redis_network_policy(service_name="m")["spec"]["ingress"][0]["from"]
    ]
    assert executor["podMetadata"]["labels"] in admitted


def test_setting_the_image_rewrites_every_executor_and_refuses_a_layout_it_does_not_know():
    from klinecast.platform.k8s import PIPELINE_IMAGE
    from klinecast.platform.kfp.compile import with_image

    body = TRAINING.read_text()
    body = body[body.index("components:") :]  # the spec, without the header comments
    image = "registry.gitlab.example.com/team/klinecast/pipeline:abc1234"
    spec = next(yaml.safe_load_all(with_image(body, image)))
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {image}
    # one executor already elsewhere: kfp wrote something this rewrite was not made for
    odd = body.replace(f"image: {PIPELINE_IMAGE}\n", "image: somewhere/else:1\n", 1)
    with pytest.raises(ValueError, match="executor images"):
        with_image(odd, image)
