"""``selfnas report`` and ``selfnas info`` on a damaged run list its problems first (unreadable
model, damaged or torn metric lines, no evaluation, no data name, a live writer) and exit 0; only a
folder with nothing to report is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selfnas.config import build_config
from selfnas.info import format_info, run_info
from selfnas.report.write import write_report
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import REPO, TINY, run_cli


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished training run, not evaluated (run.eval_at_end off)."""
    path = tmp_path_factory.mktemp("damaged") / "run"
    cfg = build_config(overrides=[*TINY, "optim.epochs=1", "run.knn_every=0"])
    Trainer(cfg, RunDir.prepare(path), quiet=True).fit()
    return path


def damaged(finished: Path, dest: Path) -> Path:
    """The issue's run: model.safetensors unreadable, a config that names no data; plus a damaged
    metrics line in the middle and a torn last one."""
    run = Path(shutil.copytree(finished, dest))
    (run / "model.safetensors").write_bytes(b"\x00" * 100)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].pop("name")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines.insert(1, "{not json\n")
    (run / "metrics.jsonl").write_text("".join(lines) + '{"kind": "step", "st')
    return run


def test_the_issue_damaged_run_lists_its_problems_first(finished, tmp_path):
    run = damaged(finished, tmp_path / "run")
    write_report(run)
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    top = md.split("**State:**")[0]
    for fragment in (
        "model.safetensors is unreadable",
        "config.yaml names no dataset (data.name)",
        "no evaluation (eval.json)",
        "metrics.jsonl: 1 damaged line(s) (line 2)",
        "metrics.jsonl: the last line is torn",
    ):
        assert fragment in top and fragment in html, fragment
    assert html.index("Problems") < html.index('class="badge')
    text = format_info(run_info(run))
    assert text.splitlines()[0].startswith("problem") and "model.safetensors is unreadable" in text
    assert "no evaluation (eval.json)" in text and "damaged line(s)" in text


@pytest.mark.slow  # three fresh interpreters
def test_the_commands_exit_0_on_a_damaged_run_and_2_on_nothing(finished, tmp_path):
    run = damaged(finished, tmp_path / "run")
    for command in ("report", "info"):
        proc = run_cli(command, str(run))
        assert proc.returncode == 0, proc.stderr
    assert "problem" in proc.stdout.splitlines()[0]
    (tmp_path / "empty").mkdir()
    assert run_cli("report", str(tmp_path / "empty")).returncode == 2
    assert run_cli("info", str(tmp_path / "empty")).returncode == 2


def test_a_healthy_finished_and_evaluated_run_has_no_problems(finished, tmp_path):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    (run / "eval.json").write_text(json.dumps({"data": "synthetic", "knn": {"val": 0.5, "test": 0.5}}))
    assert run_info(run)["problems"] == []
    write_report(run)
    assert "Problems" not in (run / "report.md").read_text()


def test_a_run_held_by_a_live_process_says_so(finished, tmp_path):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    RunDir(run).write_status("running", step=3)
    code = "import sys, time\nfrom selfnas.rundir import RunDir\nrun = RunDir(sys.argv[1])\nrun.lock()\n"
    code += "print('held', flush=True)\ntime.sleep(600)\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        info = run_info(run)
        assert info["status"]["state"] == "running" and info["owner"]["pid"] == holder.pid
        assert any(f"a live process writes this run: pid {holder.pid}" in p for p in info["problems"])
        assert f"pid {holder.pid}" in format_info(info).splitlines()[0]
    finally:
        holder.kill()
        holder.wait()
    info = run_info(run)  # the same run once its process is gone: killed
    assert info["status"]["state"] == "interrupted" and info["owner"] is None
    assert any("no process holds the run: it was killed" in p for p in info["problems"])
