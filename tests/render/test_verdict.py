"""The verdict rule and the undecided-search warning, on numbers chosen to sit on each side."""

import math

import pytest

from selfnas.render.verdict import (
    MIN_SEEDS,
    UNDECIDED_MARGIN,
    compare,
    decision_warning,
    record_decision_warning,
)


def side(knn, linear, split="test"):
    return {"knn": {split: knn}, "linear": {split: linear}}


def test_one_seed_mixed_result_is_no_evidence_and_states_both_differences():
    v = compare(side(0.7157, 0.7331), side(0.7126, 0.7442))
    assert v.sentence == (
        "found heads are 0.31 kNN points better and 1.11 linear points worse on test, "
        "one seed: no evidence of better heads."
    )
    assert v.better is None
    assert v.rows[0] == ["kNN test", "71.57%", "71.26%", "+0.31"]
    assert v.rows[1] == ["linear test", "73.31%", "74.42%", "-1.11"]


def test_a_loss_on_both_probes_is_called_a_loss():
    v = compare(side(0.70, 0.72), side(0.71, 0.73))
    assert v.better is False and v.sentence.endswith("the hand-crafted heads are better.")


def test_a_one_seed_win_is_not_called_a_find():
    v = compare(side(0.75, 0.76), side(0.70, 0.72))
    assert v.better is None
    assert "a win on this run, not yet evidence" in v.sentence and "better on every seed" not in v.sentence


def test_better_needs_every_seed_on_both_probes():
    hand = side([0.70, 0.70, 0.70], [0.72, 0.72, 0.72])
    win = compare(side([0.71, 0.72, 0.705], [0.73, 0.725, 0.73]), hand)
    assert win.better is True and "3 seeds: the found heads are better on every seed" in win.sentence
    assert "(+0.50 … +2.00)" in win.rows[0][3]  # the range of the paired differences
    one_seed_lost = compare(side([0.71, 0.72, 0.69], [0.73, 0.725, 0.73]), hand)
    assert one_seed_lost.better is None and "better on every seed" not in one_seed_lost.sentence
    too_few = compare(side([0.71] * (MIN_SEEDS - 1), [0.73] * (MIN_SEEDS - 1)), hand)
    assert too_few.better is None


def test_sizes_are_shown_with_their_ratio_and_missing_scores_give_no_verdict():
    sizes = {
        "found": {"head_params": 83_000, "flops": 3.0e6},
        "hand": {"head_params": 379_000, "flops": 3.2e6},
    }
    v = compare(side(0.7, 0.7), side(0.7, 0.7), sizes)
    assert ["head parameters", "83k", "379k", "0.22×"] in v.rows
    assert ["FLOPs per image", "3M", "3.2M", "0.94×"] in v.rows
    assert compare({"knn": {"val": 0.7}}, {"knn": {"val": 0.7}}) is None  # no test scores
    assert compare(side(math.nan, None), side(0.7, 0.7)) is None


def test_undecided_search_is_warned_about_with_its_remedy():
    uniform = {"projector": [[0.125] * 8] * 3}
    warning = decision_warning(uniform, entropy=math.log(8) * 0.98, max_entropy=math.log(8))
    assert "98% of its maximum" in warning and "search.arch_lr" in warning
    assert f"below {UNDECIDED_MARGIN}" in warning


@pytest.mark.parametrize("margin, warned", [(UNDECIDED_MARGIN / 2, True), (UNDECIDED_MARGIN * 4, False)])
def test_top_two_margin_decides_the_warning(margin, warned):
    rest = (1 - 0.5 - (0.5 - margin)) / 6
    layer = [0.5, 0.5 - margin] + [rest] * 6
    entropy = -sum(w * math.log(w) for w in layer)
    found = decision_warning({"predictor": [layer, layer]}, entropy=entropy, max_entropy=math.log(8))
    assert (found is not None) is warned


def test_a_decided_record_has_no_warning():
    decided = [0.93] + [0.01] * 7
    entropy = -sum(w * math.log(w) for w in decided)
    assert record_decision_warning({"alphas": {"projector": [decided] * 4}, "alpha_entropy": entropy}) is None
    assert record_decision_warning({"loss": 1.0}) is None
