"""The one kNN / linear-probe result table (selfnas/render/tables.py), as eval.json and run_info give it."""

from __future__ import annotations

import math

import pytest

from selfnas.render.markdown import md_table
from selfnas.render.tables import eval_lines, eval_rows, eval_splits, percent, score_line, split_order

# eval.json as selfnas.evaluation.evaluate writes it (test before val, as a dict may hold them)
EVAL_JSON = {
    "data": "synthetic",
    "n_train": 461,
    "feature_dim": 16,
    "knn": {"test": 0.7213, "val": 0.6},
    "linear": {"test": 0.75, "val": 0.7412, "weight_decay": 0.0001, "cv": {"0.0001": 0.7, "0.001": 0.6}},
    "seconds": 1.5,
}
# the same scores as selfnas.info.eval_summary condenses them (and export's model card reads them)
SUMMARY = {
    "data": "synthetic",
    "feature_dim": 16,
    "knn": {"test": 0.7213, "val": 0.6},
    "linear": {"test": 0.75, "val": 0.7412},
    "linear_weight_decay": 0.0001,
}
ROWS = [
    ["kNN top-1 (k=200)", "60.00%", "72.13%"],
    ["linear probe (weight decay 0.0001)", "74.12%", "75.00%"],
]


def test_eval_json_gives_val_then_test_and_both_rows():
    assert eval_rows(EVAL_JSON) == (["metric", "val", "test"], ROWS)


def test_the_run_info_summary_gives_the_same_table():
    assert eval_rows(SUMMARY) == (["metric", "val", "test"], ROWS)


def test_without_a_linear_probe_there_is_only_the_knn_row():
    for evaluation in (
        {"knn": {"val": 0.5, "test": 0.25}},
        {"knn": {"val": 0.5, "test": 0.25}, "linear": {}},
    ):
        assert eval_rows(evaluation) == (
            ["metric", "val", "test"],
            [["kNN top-1 (k=200)", "50.00%", "25.00%"]],
        )


def test_only_a_val_split():
    evaluation = {"knn": {"val": 0.123456}, "linear": {"val": 1.0, "weight_decay": 1e-5}}
    assert eval_rows(evaluation) == (
        ["metric", "val"],
        [["kNN top-1 (k=200)", "12.35%"], ["linear probe (weight decay 1e-05)", "100.00%"]],
    )


def test_a_probe_reported_on_test_only_leaves_its_val_cell_empty():
    evaluation = {"knn": {"val": 0.5, "test": 0.6}, "linear": {"test": 0.7, "weight_decay": 0.01}}
    header, rows = eval_rows(evaluation)
    assert header == ["metric", "val", "test"]
    assert rows[1] == ["linear probe (weight decay 0.01)", "-", "70.00%"]


def test_a_probe_without_its_weight_decay_is_just_the_linear_probe():
    _, rows = eval_rows({"knn": {"test": 0.5}, "linear": {"test": 0.5}})
    assert rows[1] == ["linear probe", "50.00%"]


def test_nothing_evaluated_gives_an_empty_table():
    assert eval_rows({}) == (["metric"], [])


def test_an_untrusted_file_shows_odd_values_as_text_and_other_splits_last():
    evaluation = {
        "knn": {"test": 0.5, "<b>": "<b>", "val": None, "train": math.nan},
        "linear": {"test": True, "weight_decay": "big", "cv": {"1": 0.5}},
    }
    header, rows = eval_rows(evaluation)
    assert header == ["metric", "val", "test", "<b>", "train"]
    assert rows == [
        ["kNN top-1 (k=200)", "-", "50.00%", "<b>", "nan"],
        ["linear probe (weight decay big)", "-", "True", "-", "-"],
    ]
    assert eval_rows({"knn": [0.5], "linear": "x"}) == (["metric"], [])


def test_eval_splits_counts_linear_splits_only_with_a_score():
    assert eval_splits({"knn": {"test": 0.1}, "linear": {"val": 0.2, "weight_decay": 1.0, "cv": {}}}) == [
        "val",
        "test",
    ]
    assert eval_splits({"linear": {"val": "n/a"}}) == []


def test_split_order_and_percent():
    assert split_order({"test", "b", "val", "a"}) == ["val", "test", "a", "b"]
    assert [percent(v) for v in (0.72125, 1, 0, None, math.inf, False, "x")] == [
        "72.12%",
        "100.00%",
        "0.00%",
        "-",
        "inf",
        "False",
        "x",
    ]


def test_score_line_is_val_first_and_skips_what_is_not_a_score():
    assert score_line({"test": 0.7, "val": 0.6}) == "val 60.00%, test 70.00%"
    assert score_line({"test": 0.7, "weight_decay": 0.1, "cv": {}}) == "test 70.00%"
    assert score_line({}) == "-"


@pytest.mark.parametrize("evaluation", [EVAL_JSON, SUMMARY])
def test_eval_lines_for_selfnas_info(evaluation):
    assert eval_lines(evaluation) == [
        ("kNN", "val 60.00%, test 72.13% (k=200)"),
        ("linear probe", "val 74.12%, test 75.00% (weight decay 0.0001)"),
    ]


def test_eval_lines_without_a_probe():
    assert eval_lines({"knn": {"val": 0.5}}) == [("kNN", "val 50.00% (k=200)")]
    assert eval_lines({}) == []


def test_the_rows_make_the_model_cards_markdown_table():
    assert md_table(*eval_rows(SUMMARY)) == [
        "| metric | val | test |",
        "| --- | --- | --- |",
        "| kNN top-1 (k=200) | 60.00% | 72.13% |",
        "| linear probe (weight decay 0.0001) | 74.12% | 75.00% |",
    ]
