"""The CLI as a user meets it: one-line errors with exit code 2, a real kill -9 and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from selfnas.io import read_jsonl
from tests.conftest import REPO, TINY, run_cli, run_cli_here, set_args


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_help_lists_commands():
    proc = run_cli("--help", check=True)
    for command in ("train", "eval", "datasets", "backbones"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--data", "mnist", "--data-root", "/nonexistent-dir"], "--data-root"),
        (["--data", "no-such-data"], "unknown dataset"),
        (["--method", "dino"], "method.name"),
        (["--backbone", "vgg"], "unknown backbone"),
        (["--batch-size", "0"], "optim.batch_size"),
        (["--lr", "-0.1"], "optim.lr"),
        (["--set", "optim.batch_size=100000"], "optim.batch_size"),
        (["--set", "run.device=tpu"], "device"),
        (["--set", "method.projector={layers: [{op: rm_rf, dim: 4}]}"], "unknown op"),
        (["--data", "imagefolder:/nonexistent-folder"], "nonexistent-folder"),
        (["--config", "/nonexistent.toml"], "not found"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, fragment):
    proc = run_cli_here("train", "--out", str(tmp_path / "run"), *set_args(TINY), *args)
    assert fragment in _one_line_error(proc)


def test_batch_larger_than_data(tmp_path):
    proc = run_cli_here("train", "--out", str(tmp_path / "r"), *set_args(TINY), "--batch-size", "4096")
    assert "larger than" in _one_line_error(proc)


def test_existing_run_is_refused_without_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--out", str(out), *set_args(TINY), "--epochs", "1", check=True)
    assert "--resume" in _one_line_error(run_cli_here("train", "--out", str(out), *set_args(TINY)))
    assert "already finished" in _one_line_error(run_cli_here("train", "--out", str(out), "--resume"))
    run_cli("train", "--out", str(out), *set_args(TINY), "--epochs", "1", "--overwrite", check=True)
    plain = tmp_path / "precious"
    plain.mkdir()
    (plain / "thesis.tex").write_text("x")
    assert "not a selfnas run" in _one_line_error(run_cli_here("train", "--out", str(plain), "--overwrite"))
    assert (plain / "thesis.tex").exists()


def test_train_then_eval_prints_the_table(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "--out", str(out), *set_args(TINY), check=True)
    assert "kNN top-1" in proc.stdout and "linear probe" in proc.stdout
    assert proc.stdout.index("val") < proc.stdout.index("test")  # the report's column order
    assert f"run: {out}" in proc.stdout and f"next: selfnas report {out}" in proc.stdout
    result = json.loads((out / "eval.json").read_text())
    assert set(result["knn"]) == {"val", "test"}

    def cells(stdout):  # the printed table's val and test cells, row by row
        rows = [line.split("│") for line in stdout.splitlines() if line.startswith("│")]
        return [[c.strip() for c in row[2:4]] for row in rows]

    # the printed table shows eval.json's numbers: rows kNN then linear probe, columns val then test
    printed = cells(proc.stdout)
    assert printed == [[f"{100 * result[m][s]:.2f}%" for s in ("val", "test")] for m in ("knn", "linear")]
    assert result["knn"]["test"] >= 0.5  # 4 classes, chance 0.25; seeds 0-2 measured 0.73-0.94
    again = run_cli("eval", str(out / "checkpoints" / "last.safetensors"), "--no-linear", check=True)
    assert cells(again.stdout) == printed[:1]  # the last checkpoint is the final model: same kNN, no probe
    assert "neither" in _one_line_error(run_cli_here("eval", str(tmp_path / "missing")))


@pytest.mark.parametrize("command", ["train", "search"])
def test_kill_9_then_resume_matches_uninterrupted(tmp_path, command):
    args = [command, *set_args(TINY), "--set", "optim.epochs=6", "--set", "run.checkpoint_every=2", "--quiet",
            "--set", "run.eval_at_end=false"]  # fmt: skip
    if command == "search":
        args += ["--order", "2", "--set", "search.projector_layers=2", "--set", "search.predictor_layers=2"]
    run_cli(*args, "--out", str(tmp_path / "full"), check=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfnas.cli", *args, "--out", str(tmp_path / "killed")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    status = tmp_path / "killed" / "status.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(status.read_text()).get("step", 0) >= 10:
                break
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(status.read_text())["state"] == "running"  # killed mid-run, not finished
    run_cli(command, "--out", str(tmp_path / "killed"), "--resume", "--quiet", check=True)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    if command == "search":
        assert (tmp_path / "full" / "genotype.json").read_text() == (
            tmp_path / "killed" / "genotype.json"
        ).read_text()
    # no torn file: every JSON file in the run parses
    for path in (tmp_path / "killed").rglob("*.json"):
        json.loads(path.read_text())


def test_unlabeled_flat_folder_trains_and_eval_refuses(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(80):
        arr = (torch.rand(20, 20, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"{i}.png")
    out = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith("data.name")]
    run_cli(
        "train",
        "--out",
        str(out),
        *set_args(overrides),
        "--data",
        f"imagefolder:{folder}@16",
        "--batch-size",
        "16",
        "--epochs",
        "1",
        check=True,
    )
    assert (out / "model.safetensors").exists()
    assert "labels" in _one_line_error(run_cli_here("eval", str(out)))


def test_search_then_retrain_the_found_heads(tmp_path):
    search = tmp_path / "search"
    args = [*set_args(TINY), "--set", "search.projector_layers=2", "--set", "search.predictor_layers=2"]
    proc = run_cli("search", "--space", "heads", "--out", str(search), *args, "--quiet", check=True)
    assert "found heads" in proc.stdout and (search / "genotype.json").exists()
    assert f"next: selfnas train --genotype {search / 'genotype.json'}" in proc.stdout
    retrain = tmp_path / "retrain"
    run_cli(
        "train",
        "--genotype",
        str(search / "genotype.json"),
        "--out",
        str(retrain),
        *set_args(TINY),
        check=True,
    )
    # 4 classes, chance 0.25; found heads retrained with seeds 0-2 measured 0.76-0.90
    assert json.loads((retrain / "eval.json").read_text())["knn"]["test"] >= 0.5


@pytest.mark.parametrize(
    "content, fragment",
    [
        (
            '{"format": "selfnas-genotype", "version": 1, "space": "heads", "method": "simsiam", '
            '"projector": {"layers": [{"op": "os.system(\'ls\')", "dim": 4}]}, "predictor": null}',
            "unknown op",
        ),
        ("not json at all", "not valid JSON"),
        ('{"format": "selfnas-genotype", "version": 1, "space": "heads"}', "missing keys"),
    ],
)
def test_bad_genotype_file_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "g.json"
    path.write_text(content)
    proc = run_cli_here("train", "--genotype", str(path), "--out", str(tmp_path / "r"), *set_args(TINY))
    assert fragment in _one_line_error(proc)
    assert not (tmp_path / "r").exists()


def test_failed_start_leaves_no_run_directory(tmp_path):
    out = tmp_path / "run"
    _one_line_error(run_cli_here("train", "--out", str(out), "--data", "mnist", "--data-root", str(tmp_path)))
    assert not out.exists()


def _tiny_yaml(path):
    from selfnas.config import apply_override

    data: dict = {}
    for override in [*TINY, "search.projector_layers=2", "search.predictor_layers=2"]:
        apply_override(data, override)
    import yaml

    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_pipeline_runs_and_resumes(tmp_path):
    cfg = _tiny_yaml(tmp_path / "tiny.yaml")
    out = tmp_path / "qs"
    args = ("quickstart", "--space", "heads", "--config", str(cfg), "--out", str(out), "--search-epochs", "1")
    proc = run_cli(*args, "-q", check=True)
    assert "found vs hand-crafted" in proc.stdout and "found projector" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["found"]["knn"]) == {"val", "test"}
    assert f"verdict: {summary['verdict']}" in proc.stdout and "on test, one seed:" in summary["verdict"]
    sizes = summary["sizes"]
    assert sizes["found"]["head_params"] != sizes["hand"]["head_params"] and sizes["hand"]["flops"] > 0
    assert f"next: selfnas export {out}/found" in proc.stdout
    for stage in ("search", "found", "hand"):
        assert json.loads((out / stage / "status.json").read_text())["state"] == "finished"
    # a lost evaluation is redone on the next call; finished stages are not retrained
    (out / "hand" / "eval.json").unlink()
    before = (out / "found" / "model.safetensors").stat().st_mtime_ns
    run_cli(*args, "-q", check=True)
    assert (out / "hand" / "eval.json").exists()
    assert (out / "found" / "model.safetensors").stat().st_mtime_ns == before


def test_recorded_command_reproduces_the_run(tmp_path):
    layers = ["--set", "search.projector_layers=2", "--set", "search.predictor_layers=2"]
    run_cli("search", *set_args(TINY), *layers, "--out", str(tmp_path / "a"), "--quiet", check=True)
    provenance = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert provenance["seed"] == 0 and provenance["versions"]["torch"]
    command = provenance["command"][1:]
    command[command.index("--out") + 1] = str(tmp_path / "b")
    run_cli(*command, check=True)
    assert (tmp_path / "a" / "genotype.json").read_text() == (tmp_path / "b" / "genotype.json").read_text()

    def losses(run):
        return [(r["step"], r.get("loss")) for r in read_jsonl(tmp_path / run / "metrics.jsonl")]

    assert losses("a") == losses("b")


def test_train_with_a_search_section_is_a_plain_training_run(tmp_path):
    out = tmp_path / "run"
    run_cli(
        "train",
        "--out",
        str(out),
        *set_args(TINY),
        "--set",
        "search.arch_lr=0.01",
        "--epochs",
        "1",
        check=True,
    )
    import yaml

    from selfnas.info import run_info

    assert yaml.safe_load((out / "config.yaml").read_text())["search"] is None
    assert run_info(out)["kind"] == "train"


def test_cell_search_then_retrain_via_the_cli(tmp_path):
    cells = ["--set", "search.nodes=2", "--set", "search.cell_width=4", "--set", "search.cell_layers=3"]
    proc = run_cli("search", "--space", "cells", "--out", str(tmp_path / "s"), *set_args(TINY), *cells, "-q",
                   "--epochs", "1", check=True)  # fmt: skip
    assert "found cells" in proc.stdout
    genotype = tmp_path / "s" / "genotype.json"
    assert json.loads(genotype.read_text())["space"] == "cells"
    retrain = ["--genotype", str(genotype), "--out", str(tmp_path / "r"), "--epochs", "1"]
    run_cli("train", *retrain, *set_args(TINY), check=True)
    assert yaml_backbone(tmp_path / "r") == "darts_cells"


def yaml_backbone(run):
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["model"]["backbone"]


def test_tpe_cell_search_via_the_cli(tmp_path):
    cells = ["--set", "search.nodes=2", "--set", "search.cell_width=4", "--set", "search.cell_layers=3",
             "--set", "search.trial_epochs=1"]  # fmt: skip
    study = ["--space", "cells", "--strategy", "tpe", "--trials", "2", "--out", str(tmp_path / "s")]
    proc = run_cli("search", *study, *set_args(TINY), *cells, "-q", check=True)
    assert "found cells" in proc.stdout and (tmp_path / "s" / "study.db").exists()
    assert "--space cells" in _one_line_error(
        run_cli_here("search", "--strategy", "random", "--out", str(tmp_path / "h"))
    )


def test_help_shows_the_config_defaults_and_no_type_for_flags():
    """(Each default against the schema: tests/test_config_precedence.py.)"""
    out = " ".join(run_cli("train", "--help", check=True).stdout.split())  # unwrapped
    assert "[default: simsiam]" in out and "[default: 256]" in out and "--no-compile" in out
    assert "<bool>" not in out and "{" not in run_cli("eval", "--help", check=True).stdout.splitlines()[0]


def test_no_usage_line_shows_an_argument_in_braces():
    from typer.main import get_command

    from selfnas.cli import app

    group = get_command(app)
    usages = {
        name: cmd.get_usage(cmd.make_context(name, ["--help"], resilient_parsing=True))
        for name, cmd in group.commands.items()
    }
    assert "RUN_DIR" in usages["export"] and "TEXT_OR_FILE" in usages["import-genotype"]
    assert [name for name, usage in usages.items() if "{" in usage] == []


def test_import_genotype_writes_a_validated_file_or_one_line_error(tmp_path):
    out = tmp_path / "darts_v2.json"
    proc = run_cli("import-genotype", "DARTS_V2", "--out", str(out), check=True)
    assert f"next: selfnas train --genotype {out}" in proc.stdout
    genotype = json.loads(out.read_text())
    assert genotype["space"] == "cells" and genotype["normal"][-1] == ["dil_conv_3x3", 2]
    bad = tmp_path / "bad.json"
    text = (
        "Genotype(normal=[('warp_conv', 0), ('skip_connect', 1)], normal_concat=[2], "
        "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])"
    )
    err = _one_line_error(run_cli_here("import-genotype", text, "--out", str(bad)))
    assert "warp_conv" in err and not bad.exists()
