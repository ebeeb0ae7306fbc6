"""``run.precision``: one setting, which old configs' ``run.amp`` folds into with the meaning it had
(bf16 autocast on CUDA only, so fp32 on the CPU), and a ``bf16`` that this CPU cannot compute
natively refused in one line before anything is written."""

from __future__ import annotations

import pytest
import torch
import yaml

from selfnas import device
from selfnas.build import load_run_config
from selfnas.config import build_config, config_to_yaml
from selfnas.errors import ConfigError
from selfnas.rundir import RunDir
from tests.conftest import TINY, run_cli_here, set_args

CUDA_HERE = "bf16" if torch.cuda.is_available() else "fp32"


@pytest.mark.parametrize(
    ("amp", "device_spec", "precision"),
    [
        (True, "cpu", "fp32"),  # amp never acted on the CPU
        (True, "cuda", "bf16"),
        (True, "cuda:1", "bf16"),
        (False, "cuda", "fp32"),
        (False, "auto", "fp32"),
        (True, "auto", CUDA_HERE),  # what device auto was: CUDA where there is one
    ],
)
def test_an_old_config_with_amp_still_loads_with_the_meaning_it_had(tmp_path, amp, device_spec, precision):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"run": {"seed": 3, "device": device_spec, "amp": amp}}))
    config = build_config(path)
    assert config.run.precision == precision and config.run.seed == 3
    assert "amp" not in config.run.model_dump() and "amp:" not in config_to_yaml(config)


def test_an_old_run_directory_loads_and_keeps_its_numbers(tmp_path):
    """A run written before run.precision: every config.yaml then said ``amp: true`` (the default)."""
    new = config_to_yaml(build_config(overrides=TINY))
    assert "  precision: fp32\n" in new
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.config.write_text(new.replace("  precision: fp32\n", "  amp: true\n"))
    assert load_run_config(run) == build_config(overrides=TINY)  # fp32 on the CPU, as it ran


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["run.amp=true", "run.precision=bf16"], "amp is the old name of run.precision; drop run.amp"),
        (["run.amp=sometimes"], "amp must be true or false"),
        (["run.precision=fp16"], "run.precision: Input should be 'fp32', 'bf16' or 'auto'"),
    ],
)
def test_amp_beside_precision_and_bad_values_are_one_line_errors(overrides, says):
    with pytest.raises(ConfigError) as err:
        build_config(overrides=overrides)
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("command", ["train", "search", "quickstart"])
def test_bf16_on_a_cpu_without_it_is_refused_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, command):
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)
    out = tmp_path / "run"
    proc = run_cli_here(command, "--out", str(out), *set_args([*TINY, "run.precision=bf16"]), "-q")
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, lines)
    assert "no native bf16" in lines[0] and "run.precision=fp32 or auto" in lines[0]
    # quickstart makes its folder to lock it first (as for any refusal of its own): it stays empty
    assert not out.exists() or (command == "quickstart" and not any(out.iterdir()))
