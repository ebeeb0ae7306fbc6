"""The study folder keeps its probe results in ``probes/``; a folder written before keeps them."""

from __future__ import annotations

import json

from selfnas.studies.cache import StudyDir


def test_a_study_folder_from_before_the_rename_keeps_its_probe_results(tmp_path):
    result = {"arch": "a01", "scenario": "syn", "linear": 0.5}
    (tmp_path / "cells").mkdir()  # the folder's name before probe results were called so
    (tmp_path / "cells" / "a01.syn.json").write_text(json.dumps(result))
    study = StudyDir(tmp_path)
    assert study.read_probes() == {("a01", "syn"): result}
    assert study.probe("a01", "syn").exists() and not (tmp_path / "cells").exists()


def test_a_new_study_folder_has_no_probe_results_yet(tmp_path):
    assert StudyDir(tmp_path).read_probes() == {} and not (tmp_path / "probes").exists()
