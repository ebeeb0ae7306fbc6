"""``selfnas search`` ends a study measured with labels by printing how each label-free score ranked
the trials against their val accuracy, the search's own score first."""

from rich.console import Console

from selfnas import cli
from selfnas.nas.optuna.optuna_search import correlations


def _row(rankme: float, view_retrieval: float, ssl_loss: float, linear: float) -> dict:
    scores = {"rankme": rankme, "view_retrieval": view_retrieval, "ssl_loss": ssl_loss}
    return {"state": "COMPLETE", "scores": scores, "accuracy": {"knn": linear - 0.05, "linear": linear}}


def _printed(result: dict, monkeypatch) -> list[str]:
    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    cli._print_correlations(result)
    return console.export_text().splitlines()


def test_a_study_with_labels_prints_each_score_against_accuracy(monkeypatch):
    # rankme falls as accuracy rises (against it), view_retrieval rises with it, the loss falls with it
    rows = [_row(40 - i, 0.1 * i, 2.0 - 0.1 * i, 0.5 + 0.05 * i) for i in range(5)]
    lines = _printed({"score": "view_retrieval", "correlations": correlations(rows)}, monkeypatch)
    body = [line for line in lines if line.startswith("│")]  # the rows (the header has heavy lines)
    assert "view_retrieval (this search's score)" in body[0]  # its own score first
    by_name = {line.split("│")[1].split()[0]: line for line in body}
    assert "+1.00" in by_name["view_retrieval"] and "with accuracy" in by_name["view_retrieval"]
    assert "-1.00" in by_name["rankme"] and "against accuracy" in by_name["rankme"]
    assert "-1.00" in by_name["ssl_loss"] and "with accuracy" in by_name["ssl_loss"]  # lower is better
    assert all(line.rstrip("│ ").endswith("5") for line in body)  # 5 trials each


def test_a_study_without_labels_prints_nothing(monkeypatch):
    rows = [{**_row(1, 1, 1, 0.5), "accuracy": {}} for _ in range(3)]
    assert _printed({"score": "rankme", "correlations": correlations(rows)}, monkeypatch) == []
