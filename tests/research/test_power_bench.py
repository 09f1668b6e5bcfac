"""The power benchmark's bookkeeping: its summary (benchmarks/power.py), its books' names and
seeds, and its side-by-side (benchmarks/power_compare.py), where two runs are matched series by
series and a book through its first symbol's own gate."""

import pytest

from benchmarks.power import MAX_SYMBOLS, book_seeds, book_symbols, summarise
from benchmarks.power_compare import compare, same_shape, table

CHOSEN = {"cadence_hours": 4, "anchored": True, "horizon_hours": 12, "look_back_days": 200}


def run(seed, sharpe, passed, **chosen):
    return {
        "shape": "trailing", "strength": 0.005, "seed": seed, "model_sharpe": sharpe,
        "roc_auc": 0.52, "passed": passed, "chosen": {**CHOSEN, **chosen},
    }  # fmt: skip


def test_a_shape_is_the_same_within_a_factor_of_two_of_label_and_look_back():
    assert same_shape(CHOSEN, {**CHOSEN, "horizon_hours": 24, "look_back_days": 100})
    assert not same_shape(CHOSEN, {**CHOSEN, "horizon_hours": 25})
    assert not same_shape(CHOSEN, {**CHOSEN, "cadence_hours": 24})
    assert not same_shape(CHOSEN, {**CHOSEN, "anchored": False})


def test_runs_are_matched_on_their_series_and_a_book_through_its_first_symbol():
    alone = {"runs": [run(0, 0.5, False), run(1, 1.0, True), run(2, 9.0, True)]}
    book = run(1, 0.0, True, cadence_hours=24)  # the book passed through its second symbol
    book["symbols"] = {
        "PLANTEDAUSDT": {"model_sharpe": 2.0, "roc_auc": 0.55, "own_gate_passed": False,
                         "chosen": {**CHOSEN, "horizon_hours": 30}},
        "PLANTEDBUSDT": {"model_sharpe": 3.0, "roc_auc": 0.6, "own_gate_passed": True,
                         "chosen": CHOSEN},
    }  # fmt: skip
    pooled = {"runs": [run(0, 0.7, False, cadence_hours=1), book]}
    (row,) = compare(alone, pooled)
    assert row["series"] == 2  # seed 2 is in one run only
    assert (row["a_model_sharpe"], row["a_passed"]) == (0.75, 1)
    assert (row["b_model_sharpe"], row["b_roc_auc"], row["b_passed"]) == (1.35, 0.535, 0)
    assert (row["same_shape"], row["same_cadence"]) == (0, 1)
    assert "| trailing | 2 | 0.75, 0.52, 1 of 2 | 1.35, 0.535, 0 of 2 | 0 of 2 | 1 of 2 |" in table(
        [row], ("a", "b")
    )


def test_a_book_names_each_symbol_once_and_seeds_the_first_as_the_one_symbol_run():
    names = book_symbols(MAX_SYMBOLS)
    assert len(set(names)) == MAX_SYMBOLS and all(n.isalnum() and n.isupper() for n in names)
    assert book_seeds(3, 3) == [3, 1003, 2003]
    assert set(book_seeds(0, 3)).isdisjoint(book_seeds(1, 3))
    for count in (0, MAX_SYMBOLS + 1):
        with pytest.raises(ValueError, match="1 to 26 symbols"):
            book_symbols(count)


def test_the_summary_counts_passes_with_wilson_intervals_and_no_oracle_where_none_ran():
    planted = [
        {**run(seed, 1.0, seed == 0), "oracle_sharpe": 1.5, "oracle_passes": seed < 2}
        for seed in range(4)
    ]
    books = [{**run(seed, 0.5, False), "shape": "null", "strength": 0.0, "oracle_sharpe": None,
              "oracle_passes": None} for seed in range(2)]  # fmt: skip
    found = summarise(planted + books)
    (power,), (size,) = found["power"], found["size"]
    assert (power["passed"], power["runs"], power["rate"], power["oracle_passed"]) == (1, 4, 0.25, 2)
    assert power["interval"][0] < 0.25 < power["interval"][1]
    assert (size["passed"], size["oracle_passed"], size["mean_oracle_sharpe"]) == (0, None, None)
