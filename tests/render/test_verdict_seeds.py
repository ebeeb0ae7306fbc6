"""The verdict's seed rule in literal numbers: two seeds are not enough, three can be."""

from selfnas.render.verdict import compare


def side(knn, linear):
    return {"knn": {"test": knn}, "linear": {"test": linear}}


HAND = side([0.70, 0.70, 0.70], [0.72, 0.72, 0.72])


def test_a_win_on_both_probes_on_two_seeds_is_not_called_better():
    v = compare(side([0.75, 0.76], [0.77, 0.78]), side([0.70, 0.70], [0.72, 0.72]))
    assert v.better is None
    assert "2 seeds: a win on this run, not yet evidence of better heads" in v.sentence
    assert "at least 3 seeds" in v.sentence


def test_the_same_win_on_three_seeds_is_called_better():
    v = compare(side([0.75, 0.76, 0.74], [0.77, 0.78, 0.76]), HAND)
    assert v.better is True and v.sentence.endswith("3 seeds: the found heads are better on every seed.")


def test_a_loss_on_one_of_three_seeds_is_not_called_better():
    v = compare(side([0.75, 0.76, 0.69], [0.77, 0.78, 0.76]), HAND)  # kNN lost on the third seed
    assert v.better is None and "better on every seed" not in v.sentence
