"""The KFP pipelines compile, match their committed YAML and take params.yaml's keys."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from klinecast.cli import main
from klinecast.config import Params
from klinecast.platform.pipeline_params import SECTIONS, jsonable, params_from_sections
from klinecast.platform.pipeline_yaml import compile_pipeline
from pipelines.refresh_pipeline import refresh_pipeline
from pipelines.training_pipeline import training_pipeline
from tests.support.paths import REPO

PIPELINES = {"training": training_pipeline, "refresh": refresh_pipeline}
EXTRA = {"training": {"namespace"}, "refresh": set()}


def documents(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_committed_yaml_is_current_byte_for_byte(name, tmp_path):
    fresh = tmp_path / f"{name}.yaml"
    compile_pipeline(PIPELINES[name], fresh)
    committed = REPO / "pipelines" / f"{name}_pipeline.yaml"
    assert committed.read_text() == fresh.read_text(), (
        f"{committed.name} is stale: run `klinecast pipeline compile --pipeline {name}`"
    )


def test_compiling_twice_gives_identical_bytes_where_kfp_alone_does_not(tmp_path):
    # kfp's header lists a dict default in protobuf's order, which varies between processes
    # (hash seeds); klinecast writes it from the sorted body.
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from kfp import compiler; from klinecast.platform.pipeline_yaml import compile_pipeline;"
        "from pipelines.training_pipeline import training_pipeline as p;"
        "compile_pipeline(p, Path(sys.argv[2])); compiler.Compiler().compile(p, sys.argv[3])"
    )
    ours, theirs = set(), set()
    for seed in range(6):
        out = [tmp_path / f"ours-{seed}.yaml", tmp_path / f"kfp-{seed}.yaml"]
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        subprocess.run(
            [sys.executable, "-c", script, str(REPO), *map(str, out)], check=True, env=env
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
    spec, _ = documents(REPO / "pipelines/training_pipeline.yaml")
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


def test_training_graph_fans_out_shares_the_study_and_gates_publishing():
    spec, platform = documents(REPO / "pipelines/training_pipeline.yaml")
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"validate-params", "list-symbols", "for-loop-1"}
    symbols = root["for-loop-1"]  # a branch per symbol, tune.symbols_in_parallel at once
    assert symbols["parameterIterator"]["items"]["inputParameter"].endswith("list-symbols-Output")
    assert symbols["iteratorPolicy"] == {"parallelismLimit": Params().tune.symbols_in_parallel}
    tasks = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert {"narrow-params", "ingest", "candles", "features", "collect-tuning", "evaluate",
            "train", "report"} <= set(tasks)  # fmt: skip
    loop = tasks["for-loop-2"]  # the tuning workers, within the symbol's branch
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("validate-params-Output")
    gate = tasks["condition-3"]["triggerPolicy"]["condition"]
    assert "train-Output" in gate and gate.endswith("true")  # the gate needs the final model
    assert set(spec["components"]["comp-condition-3"]["dag"]["tasks"]) == {"publish", "deploy"}
    assert tasks["report"]["dependentTasks"] == ["collect-tuning", "evaluate", "train"]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for shared in ("exec-tune-worker", "exec-collect-tuning"):
        (secret,) = executors[shared]["secretAsEnv"]
        assert secret["secretName"] == "klinecast-postgres"
        assert secret["keyToEnv"] == [
            {"envVar": "KLINECAST_OPTUNA_STORAGE", "secretKey": "optuna-url"}
        ]
    assert {s["secretName"] for s in executors["exec-publish"]["secretAsEnv"]} == {"klinecast-s3"}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.com/klinecast/pipeline:0.1.0"}
    commands = [e["container"]["command"] for e in spec["deploymentSpec"]["executors"].values()]
    assert not any("pip install" in " ".join(c) for c in commands)  # kfp is in the image


def test_every_stage_has_a_component():
    spec, _ = documents(REPO / "pipelines/training_pipeline.yaml")
    names = {n.removeprefix("comp-") for n in spec["components"]}
    for stage in ("validate-params", "ingest", "candles", "features", "tune-worker"):
        assert stage in names
    for stage in ("collect-tuning", "evaluate", "train", "report", "publish", "deploy"):
        assert stage in names


def test_compile_command_writes_the_yaml(tmp_path, capsys):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    for name in ("__init__.py", "steps.py", "refresh_pipeline.py"):
        (pipelines / name).write_text((REPO / "pipelines" / name).read_text())
    argv = ["pipeline", "compile", "--pipeline", "refresh", "--pipelines-dir", str(pipelines)]
    assert main(argv) == 0
    written = (pipelines / "refresh_pipeline.yaml").read_text()
    assert written == (REPO / "pipelines/refresh_pipeline.yaml").read_text()
    assert main(["pipeline", "compile", "--pipelines-dir", str(tmp_path / "nowhere")]) == 1
    assert "has no training_pipeline.py" in capsys.readouterr().err


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
    spec, platform = documents(REPO / "pipelines/refresh_pipeline.yaml")
    assert spec["root"]["dag"]["tasks"]["for-loop-1"]["parameterIterator"]["items"][
        "inputParameter"
    ].endswith("list-symbols-Output")  # every symbol's branch ends by syncing that symbol
    tasks = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(tasks["features-sync"]["dependentTasks"]) == {"features", "narrow-params"}
    assert not tasks["features-sync"]["cachingOptions"].get("enableCache", False)
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
        for peer in redis_network_policy(model_name="m")["spec"]["ingress"][0]["from"]
    ]
    assert executor["podMetadata"]["labels"] in admitted


def test_setting_the_image_rewrites_every_executor_and_refuses_a_layout_it_does_not_know():
    from klinecast.platform.k8s import PIPELINE_IMAGE
    from klinecast.platform.pipeline_yaml import with_image

    body = (REPO / "pipelines/training_pipeline.yaml").read_text()
    body = body[body.index("components:") :]  # the spec, without the header comments
    image = "registry.gitlab.example.com/team/klinecast/pipeline:abc1234"
    spec = next(yaml.safe_load_all(with_image(body, image)))
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {image}
    # one executor already elsewhere: kfp wrote something this rewrite was not made for
    odd = body.replace(f"image: {PIPELINE_IMAGE}\n", "image: somewhere/else:1\n", 1)
    with pytest.raises(ValueError, match="executor images"):
        with_image(odd, image)
