"""The time left of an evaluation: from the rate shown so far, every report passed on unchanged."""

from selfnas.eval.eta import EvalEta
from selfnas.render.durations import duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (0, 42, 200, 4000)] == ["0 s", "42 s", "3 min 20 s", "1 h 6 min"]
    assert [duration(s, compact=True) for s in (0, 42, 200, 4000)] == ["0s", "42s", "3m20s", "1h06m"]


def test_the_embedding_eta_pools_every_feature_phase():
    clock, lines, seen = Clock(), [], []
    eta = EvalEta(lambda *a: seen.append(a), lines.append, images=4000, clock=clock, every=0.0)
    eta("features train", 0, 3000)
    clock.now += 10
    eta("features train", 1000, 3000)  # 100 images/s: 3000 left -> 30 s
    assert lines == [
        "eta 30 s to embed the remaining 3,000 of 4,000 images (100 images/s), then kNN and the linear probe"
    ]
    clock.now += 20
    eta("features train", 3000, 3000)  # done: no line at the end of a phase
    eta("features test", 0, 1000)
    clock.now += 5
    eta("features test", 500, 1000)  # 3500 in 35 s: 500 left at 100 images/s -> 5 s
    assert lines[-1].startswith("eta 5 s to embed the remaining 500 of 4,000 images")
    assert seen == [
        ("features train", 0, 3000), ("features train", 1000, 3000), ("features train", 3000, 3000),
        ("features test", 0, 1000), ("features test", 500, 1000),
    ]  # fmt: skip


def test_a_later_phase_is_timed_at_its_own_rate():
    clock, lines = Clock(), []
    eta = EvalEta(None, lines.append, images=10, clock=clock, every=0.0)
    eta("linear probe", 0, 7)
    clock.now += 4
    eta("linear probe", 2, 7)  # 2 s a fit, 5 to go
    assert lines == ["eta 10 s for the linear probe (2 of 7 done)"]


def test_lines_are_spaced_by_every_seconds():
    clock, lines = Clock(), []
    eta = EvalEta(None, lines.append, images=10_000, clock=clock, every=30.0)
    eta("features train", 0, 10_000)
    for second in range(10, 100, 10):
        clock.now = 100.0 + second
        eta("features train", 10 * second, 10_000)
    assert len(lines) == 3  # at 10 s, then 40 s, then 70 s
