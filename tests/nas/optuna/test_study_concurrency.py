"""Four worker processes x 100 short trials on one study: exactly 100 finished, none lost or run twice.

SQLite is not in the list on purpose: several writers on SQLite are refused before anything is
written (tests/nas/optuna/test_optuna_search.py), because it locks; one machine uses a journal file.
"""

import uuid

import optuna
import pytest

from selfnas.api import search
from selfnas.config import build_config
from selfnas.io import read_jsonl

SHORT = ["data.train_limit=256", "optim.batch_size=32", "optim.epochs=1", "search.space=cells",
         "search.nodes=1", "search.cell_width=2", "search.cell_layers=3", "search.trial_epochs=0.15",
         "search.pruner=none", "search.label_eval=false", "search.strategy=random", "search.trials=100",
         "search.n_workers=4", "run.checkpoint_every=1000"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_four_workers_finish_exactly_one_hundred_trials(tmp_path, tiny_overrides, storage, request):
    if storage == "journal":
        url, name = f"journal:{tmp_path / 'study.log'}", "selfnas"
    else:
        url, name = request.getfixturevalue("postgres_url"), f"c{uuid.uuid4().hex[:8]}"
    cfg = build_config(
        overrides=[*tiny_overrides, *SHORT, f"search.storage={url}", f"search.study_name={name}"]
    )
    summary = search(cfg, out=tmp_path / "s", quiet=True)
    if storage == "journal":
        from optuna.storages.journal import JournalFileBackend

        opened = optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:") :]))
    else:
        opened = url
    trials = optuna.load_study(study_name=name, storage=opened).trials
    assert sum(summary["trials"].values()) == 100 and summary["trials"]["COMPLETE"] == 100
    assert sorted(t.number for t in trials) == list(range(100))  # none lost, none duplicated
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["owner"]["pid"] for t in trials}) == 4  # all four workers took part
    assert len(read_jsonl(tmp_path / "s" / "trials.jsonl")) == 100
    assert len(list((tmp_path / "s" / "trials").iterdir())) == 100
