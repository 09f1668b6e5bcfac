import dataclasses
import datetime as dt

import pandas as pd
import pytest
import yaml

from klinecast.book import Layout
from klinecast.cli import main
from klinecast.research.validation import problems_with_data, problems_with_params
from tests.support.helpers import write_cli_params
from tests.support.model_fixtures import small_features, small_params


@pytest.fixture()
def features(tmp_path):
    return pd.read_parquet(small_features(tmp_path / "features.parquet"))


def test_consistent_params_have_no_problems(features):
    assert problems_with_data(small_params(), features) == []


def test_every_problem_is_listed_with_what_to_change(features):
    params = small_params()
    space = dataclasses.replace(params.tune.search_space, look_back_days=(10, 300))
    split = dataclasses.replace(
        params.split,
        out_of_sample_start=dt.date(2022, 1, 1),
        out_of_sample_end=dt.date(2022, 5, 31),
    )
    params = dataclasses.replace(
        params, split=split, tune=dataclasses.replace(params.tune, search_space=space)
    )
    problems = problems_with_data(params, features.drop(columns=["rsi_21"]))
    assert len(problems) == 3
    assert "['rsi_21'] are not in the feature file" in problems[0]
    assert (
        "look_back_days high (300)" in problems[1]
        and "lower tune.search_space.look_back_days" in problems[1]
    )
    assert (
        "2022-01-01 .. 2022-05-31 has no rows; the data covers 2021-01-02 .. 2021-04-30"
        in problems[2]
    )


def test_no_labelled_rows(features):
    features["label"] = features["next_return"] = float("nan")
    assert "no labelled rows" in problems_with_data(small_params(), features)[0]


def test_cli_exit_codes(tmp_path, capsys):
    small_features(Layout(tmp_path).symbol("BTCUSDT").features)
    params_path = write_cli_params(tmp_path, "sqlite://", n_trials=1)
    argv = ["validate-params", "--params", str(params_path), "--root", str(tmp_path)]
    assert main(argv) == 0
    assert "is valid and consistent with each symbol's features" in capsys.readouterr().out
    text = (
        params_path.read_text()
        .replace("2021-04-30", "2021-09-30")
        .replace("2021-04-01", "2021-09-01")
    )
    params_path.write_text(text)
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "validate-params: BTCUSDT: the out-of-sample span" in captured.out
    assert "has no rows" in captured.out and "nothing was run" in captured.err


def test_params_alone_catch_a_look_back_longer_than_the_span_and_dates_outside_the_data():
    params = small_params()
    assert problems_with_params(params) == []
    split = dataclasses.replace(
        params.split, in_sample_start=dt.date(2021, 1, 1), in_sample_end=dt.date(2021, 1, 20)
    )
    data = dataclasses.replace(params.data, start=dt.date(2021, 2, 1), end=dt.date(2021, 3, 31))
    problems = problems_with_params(dataclasses.replace(params, split=split, data=data))
    assert len(problems) == 3, problems
    assert "has 20 days, fewer than look_back_days high" in problems[0]
    assert "in_sample_start 2021-01-01 is before data.start 2021-02-01" in problems[1]
    assert "out_of_sample_end 2021-04-30 is after data.end 2021-03-31" in problems[2]


def test_params_only_mode_needs_no_feature_file(tmp_path, capsys):
    params_path = write_cli_params(tmp_path, "sqlite://", n_trials=1)
    argv = ["validate-params", "--params", str(params_path), "--params-only"]
    assert main([*argv, "--root", str(tmp_path / "absent")]) == 0
    assert "is valid\n" in capsys.readouterr().out


def validate_changed_params(tmp_path, capsys, changes: dict[str, dict]):
    """`validate-params --params-only` on the CLI params with changes ({section: {key: value}});
    its exit code, output lines and stderr."""
    params_path = write_cli_params(tmp_path, "sqlite://", n_trials=1)
    raw = yaml.safe_load(params_path.read_text())
    for section, values in changes.items():
        raw[section].update(values)
    params_path.write_text(yaml.safe_dump(raw))
    code = main(["validate-params", "--params", str(params_path), "--params-only"])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


def test_validate_params_lists_every_problem_of_the_file_in_one_run(tmp_path, capsys):
    code, lines, err = validate_changed_params(
        tmp_path,
        capsys,
        {
            "data": {"intervall": "1h", "symbols": ["btc-usdt"]},  # unknown key, invalid value
            "split": {"in_sample_end": "2017-01-01"},  # before its start
            "tune": {"n_trials": "many"},  # wrong type
            "trade": {"broker": "live"},
        },
    )
    assert code == 1
    assert len(lines) == 5, lines
    for key in (
        "data.intervall: unknown key",
        "data.symbols: expected upper-case pairs like BTCUSDT",
        "split.in_sample_end: 2017-01-01 is before in_sample_start",
        "tune.n_trials: expected an integer",
        "trade.broker: expected paper or testnet",
    ):
        assert any(f"validate-params: params: {key}" in line for line in lines), key
    assert "5 problem(s)" in err and "nothing was run" in err


def test_a_loader_problem_does_not_hide_what_the_dates_rule_out(tmp_path, capsys):
    """An unknown key and an in-sample span too short for the look-back, in one run."""
    code, lines, err = validate_changed_params(
        tmp_path, capsys, {"data": {"symbl": "BTCUSDT"}, "split": {"in_sample_end": "2021-01-20"}}
    )
    assert code == 1
    assert len(lines) == 2, lines
    assert lines[0].startswith("validate-params: params: data.symbl: unknown key")
    assert "has 20 days, fewer than look_back_days high (20) + step_days (5)" in lines[1]
    assert "2 problem(s)" in err
