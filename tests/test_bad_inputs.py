"""The bad-input matrix: every user mistake, through the real CLI in a fresh interpreter.

Each case must exit with code 2 and print exactly one non-empty line, ``error: ...``, that says
what is wrong (no traceback), and must leave nothing behind: the run directory either does not
exist afterwards or is byte-for-byte what it was before.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from tests.conftest import TINY, run_cli, run_cli_here, set_args

GENOTYPE_HEAD = '{"format": "selfnas-genotype", "version": 1, "space": "heads", "method": "simsiam", '
CELLS = ["search.cell_width=4", "search.cell_layers=3", "search.nodes=2", "search.trials=2",
         "search.trial_epochs=1"]  # fmt: skip


def _idx(dims: tuple[int, ...]) -> bytes:
    header = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + bytes(int(np.prod(dims)))


def _idx_dataset(root: Path, corrupt: Callable[[bytes], bytes]) -> Path:
    """Four small MNIST IDX files under root/mnist; the train images go through ``corrupt``."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    files = {
        "train-images-idx3-ubyte": corrupt(_idx((40, 28, 28))),
        "train-labels-idx1-ubyte": _idx((40,)),
        "t10k-images-idx3-ubyte": _idx((10, 28, 28)),
        "t10k-labels-idx1-ubyte": _idx((10,)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return root


def _mixed_images(folder: Path, broken: bool) -> Path:
    """RGB, grayscale, RGBA and palette images plus a text file (and optionally a corrupt .jpg)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"rgb{i}.png")
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / f"gray{i}.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8)).save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).convert("P").save(folder / "pal.gif")
    (folder / "notes.txt").write_text("not an image, ignored")
    if broken:
        (folder / "broken.jpg").write_bytes(b"not really a jpeg")
    return folder


def _partial_fashion(tmp: Path) -> Path:
    """A --data-root whose fashion-mnist folder lacks the test labels (the installed copy is complete)."""
    folder = tmp / "d" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name, dims in (("train-images-idx3-ubyte", (40, 28, 28)), ("train-labels-idx1-ubyte", (40,)),
                       ("t10k-images-idx3-ubyte", (10, 28, 28))):  # fmt: skip
        (folder / name).write_bytes(_idx(dims))
    return tmp / "d"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write(tmp: Path, name: str, text: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


_TEMPLATE: dict[str, Path] = {}


@pytest.fixture(scope="module")
def finished_template(tmp_path_factory):
    """One tiny finished training run on an unlabeled folder, trained once per module."""
    tmp = tmp_path_factory.mktemp("template")
    folder = _mixed_images(tmp / "imgs", broken=False)
    tiny = [o for o in TINY if not o.startswith(("data.name", "optim.batch_size"))]
    run_cli("train", "--out", str(tmp / "done"), *set_args(tiny), "--data", f"imagefolder:{folder}@16",
            "--batch-size", "16", "--epochs", "1", "-q", check=True)  # fmt: skip
    _TEMPLATE["dir"] = tmp
    yield tmp
    _TEMPLATE.clear()


def _finished_run(tmp: Path) -> Path:
    """A copy of the finished run (and its images) in ``tmp`` (for the eval / existing-run cases)."""
    shutil.copytree(_TEMPLATE["dir"] / "imgs", tmp / "imgs")
    shutil.copytree(_TEMPLATE["dir"] / "done", tmp / "done")
    return tmp / "done"


@dataclass
class Case:
    """``args(tmp)`` -> CLI arguments; ``out(tmp)`` -> the directory that must be left unchanged;
    ``cwd(tmp)`` -> the working directory of the command (default: the repository)."""

    name: str
    args: Callable[[Path], list[str]]
    fragment: str
    out: Callable[[Path], Path] = field(default=lambda tmp: tmp / "run")
    after: Callable[[Path], None] | None = None
    cwd: Callable[[Path], Path] | None = None


def _no_pwned(tmp: Path) -> None:
    assert not (tmp / "PWNED").exists(), "a string in a genotype was executed"


def _genotype(layers: str, tail: str = "") -> Callable[[Path], Path]:
    """A heads genotype file whose projector has ``layers`` (JSON) and whose object ends in ``tail``."""
    body = GENOTYPE_HEAD + f'"projector": {{"layers": {layers}}}, "predictor": null{tail}}}'
    return lambda tmp: _write(tmp, "g.json", body.replace("TMP", str(tmp)))


def _file(name: str, content: str | bytes) -> Callable[[Path], Path]:
    return lambda tmp: _write(tmp, name, content)


def _empty_dir(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    (tmp / "empty" / "readme.txt").write_text("no images here")
    return tmp / "empty"


def _float_npy(tmp: Path) -> Path:
    np.save(tmp / "f.npy", np.zeros((8, 8, 8), np.float32))
    return tmp / "f.npy"


def _idx_root(corrupt: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    return lambda tmp: _idx_dataset(tmp / "d", corrupt)


def _cli(*args: str | Callable[[Path], object]) -> Callable[[Path], list[str]]:
    """CLI arguments where a callable is replaced by ``str(callable(tmp))``."""
    return lambda tmp: [a if isinstance(a, str) else str(a(tmp)) for a in args]


RUN = lambda tmp: tmp / "run"  # noqa: E731
DONE = lambda tmp: tmp / "done"  # noqa: E731
STUDY = ["--space", "cells", "--strategy", "random", *set_args(CELLS)]
CODE = '[{"op": "__import__(\'os\').system(\'touch TMP/PWNED\')", "dim": 8}]'


def _train(*extra: str | Callable[[Path], object]) -> Callable[[Path], list[str]]:
    return _cli("train", "--out", RUN, *set_args(TINY), *extra)


def _search(*extra: str | Callable[[Path], object]) -> Callable[[Path], list[str]]:
    return _cli("search", "--out", RUN, *set_args(TINY), "-q", *extra)


CASES = [
    # -- datasets
    Case("missing-dataset-files", _train("--data", "mnist", "--data-root", _empty_dir), "MNIST not found"),
    Case(
        "truncated-idx", _train("--data", "mnist", "--data-root", _idx_root(lambda b: b[:5000])), "truncated"
    ),
    Case(
        "wrong-idx-magic",
        _train("--data", "mnist", "--data-root", _idx_root(lambda b: b"\x12\x34" + b[2:])),
        "bad magic",
    ),
    Case("empty-image-folder", _train("--data", lambda t: f"imagefolder:{_empty_dir(t)}"), "no images"),
    Case(
        "mixed-folder-with-corrupt-image",
        _train("--data", lambda t: f"imagefolder:{_mixed_images(t / 'm', broken=True)}@16"),
        "broken.jpg",
    ),
    Case("npy-not-uint8", _train("--data", lambda t: f"npy:{_float_npy(t)}"), "expected uint8"),
    # a named --data-root is used or refused, never swapped for the installed copy
    Case(
        "data-root-does-not-exist",
        _train("--data", "fashion-mnist", "--data-root", lambda t: t / "typo"),
        "does not exist",
    ),
    Case(
        "data-root-lacks-a-file",
        _train("--data", "fashion-mnist", "--data-root", _partial_fashion),
        "lacks t10k-labels-idx1-ubyte",
    ),
    Case(
        "eval-unlabeled",
        _cli("eval", _finished_run, "--data", lambda t: f"imagefolder:{t / 'imgs'}@16"),
        "no labels",
        out=DONE,
    ),
    # -- unknown names
    Case("unknown-dataset", _train("--data", "no-such-data"), "unknown dataset"),
    Case("unknown-method", _train("--method", "dino"), "method.name"),
    Case("unknown-backbone", _train("--backbone", "vgg19"), "unknown backbone"),
    Case(
        "unknown-head-op",
        _train("--set", "method.projector={layers: [{op: conv_9x9, dim: 4}]}"),
        "unknown op",
    ),
    Case("unknown-search-space", _search("--space", "transformers"), "search.space"),
    Case("unknown-search-strategy", _search("--strategy", "bayes"), "search.strategy"),
    Case(
        "unknown-search-op",
        _search("--set", "search.ops=[identity, rm_rf]", "--batch-size", "32"),
        "unknown head op",
    ),
    # -- genotype files
    Case(
        "genotype-wrong-type",
        _train("--genotype", _genotype('[{"op": "linear", "dim": "8"}]')),
        "'dim' must be an integer",
    ),
    Case(
        "genotype-extra-key",
        _train("--genotype", _genotype('[{"op": "linear", "dim": 8}]', ', "x": 1')),
        "unexpected keys",
    ),
    Case("genotype-code-in-string", _train("--genotype", _genotype(CODE)), "unknown op", after=_no_pwned),
    Case(
        "genotype-absurd-dim",
        _train("--genotype", _genotype('[{"op": "linear", "dim": 1000000000}]')),
        "'dim' must be an integer",
    ),
    Case("genotype-not-json", _train("--genotype", _file("g.json", "projector: [relu]")), "not valid JSON"),
    Case(
        "genotype-width-mismatch",
        _train("--genotype", _genotype('[{"op": "linear_bn_relu", "dim": 8}]')),
        "same width",
    ),
    # -- absurd sizes and out-of-range values
    Case("absurd-backbone-width", _train("--set", "model.backbone_kwargs={width: 1000000000}"), "too large"),
    Case("absurd-backbone-depth", _train("--set", "model.backbone_kwargs={depths: [100000]}"), "too large"),
    Case("negative-lr", _train("--lr", "-0.1"), "optim.lr"),
    Case("batch-zero", _train("--batch-size", "0"), "optim.batch_size"),
    Case("val-fraction-1.5", _train("--set", "data.val_fraction=1.5"), "data.val_fraction"),
    Case("nan-epochs", _train("--set", "optim.epochs=.nan"), "finite"),
    Case("unknown-config-key", _train("--set", "optim.lr_typo=0.1"), "optim.lr_typo"),
    Case("override-without-equals", _train("--set", "optim.lr"), "section.key=value"),
    Case("n-workers-1000", _search(*STUDY, "--n-workers", "1000"), "search.n_workers"),
    # -- config files
    Case(
        "bad-yaml", _train("--config", _file("c.yaml", "optim:\n  lr: [1, 2\n")), "not valid YAML at line 3"
    ),
    Case("bad-toml", _train("--config", _file("c.toml", "[optim\nlr = 1\n")), "not valid TOML"),
    Case("binary-config", _train("--config", _file("c.yaml", b"\xff\xfe\x00bad")), "UTF-8"),
    Case("config-not-a-mapping", _train("--config", _file("c.yaml", "- 1\n- 2\n")), "mapping"),
    # -- study storage
    Case(
        "unreachable-storage",
        _search(*STUDY, "--set", "search.storage=postgresql://nouser@127.0.0.1:1/x"),
        "cannot open study storage",
    ),
    Case("sqlite-several-workers", _search(*STUDY, "--n-workers", "3"), "SQLite"),
    Case(
        "journal-folder-missing",
        _search(*STUDY, "--storage", lambda t: f"journal:{t / 'no-such-folder' / 'study.log'}"),
        "no-such-folder of the journal file",
    ),
    Case("storage-not-a-url", _search(*STUDY, "--storage", "notaurl:::"), "unknown scheme 'notaurl'"),
    # -- run directories
    Case(
        "out-under-a-file",
        _cli("train", "--out", lambda t: _write(t, "afile", "x") / "run"),
        "cannot write",
        out=lambda t: t / "afile",
    ),
    Case("existing-run", _cli("train", "--out", _finished_run, *set_args(TINY)), "--overwrite", out=DONE),
    Case(  # no --out: the default runs/RUN in the working directory, runs/ included, is removed again
        "early-error-default-out",
        _cli("train", *set_args(TINY), "--data", "no-such-data"),
        "unknown dataset",
        out=lambda t: _mkdir(t / "work"),
        cwd=lambda t: t / "work",
    ),
    Case(  # the parents the command created go too ...
        "early-error-new-parents",
        _cli(
            "train",
            "--out",
            lambda t: t / "new" / "deeper" / "run",
            *set_args(TINY),
            "--data",
            "no-such-data",
        ),
        "unknown dataset",
        out=lambda t: t / "new",
    ),
    Case(  # ... but a parent that existed before stays
        "early-error-existing-parent",
        _cli(
            "train", "--out", lambda t: _mkdir(t / "mine") / "run", *set_args(TINY), "--data", "no-such-data"
        ),
        "unknown dataset",
        out=lambda t: t / "mine",
    ),
    Case("resume-nonexistent-train", _cli("train", "--out", RUN, "--resume"), "no run to resume"),
    Case("resume-nonexistent-search", _cli("search", "--out", RUN, "--resume"), "no run to resume"),
    Case(
        "resume-and-overwrite",
        _cli("train", "--out", _finished_run, "--resume", "--overwrite"),
        "exclude each other",
        out=DONE,
    ),
]


# -- cross-family studies and the user's own folders as scenarios (study --scenario, --data NAME=...)


def _one_class(tmp: Path) -> Path:
    """An ImageFolder with a single class subfolder: nothing for a probe to tell apart."""
    folder = _mkdir(tmp / "one" / "cats")
    for i in range(4):
        Image.fromarray(np.full((8, 8), i, dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp / "one"


def _study(*extra: str | Callable[[Path], object]) -> Callable[[Path], list[str]]:
    return _cli("study", "--out", RUN, "--scenarios", "fashion-mnist", "-q", *extra)


CASES += [
    Case(
        "study-scenario-missing-folder",
        _study("--scenario", lambda t: f"pets=imagefolder:{t / 'no-such-folder'}"),
        "does not exist",
    ),
    Case(
        "study-scenario-one-class",
        _study("--scenario", lambda t: f"pets=imagefolder:{_one_class(t)}"),
        "at least 2 classes",
    ),
    Case(
        "study-scenario-flat-folder",
        _study("--scenario", lambda t: f"pets=imagefolder:{_mixed_images(t / 'm', broken=False)}"),
        "no class subfolders",
    ),
    Case("study-scenario-malformed", _study("--scenario", "pets:imagefolder"), "NAME=imagefolder:PATH"),
    Case(
        "study-scenario-name-clash",
        _study("--scenario", lambda t: f"fashion-coarse=imagefolder:{_one_class(t)}"),
        "taken by a registered scenario",
    ),
    Case(
        "study-unknown-family",
        _study("--space", "resnet-variants,vgg-variants"),
        "unknown space 'vgg-variants'",
    ),
    Case(
        "study-families-unkeyed-choices",
        _study("--space", "resnet-variants,mobilenet-variants", "--set", "study.space_kwargs={widths: [8]}"),
        "key the choices by space",
    ),
    Case(
        "data-scenario-one-class",
        _search("--data", lambda t: f"pets=imagefolder:{_one_class(t)}"),
        "at least 2 classes",
    ),
    Case(
        "data-scenario-name-clash",
        _train("--data", lambda t: f"digits=imagefolder:{_one_class(t)}"),
        "taken by a registered scenario",
    ),
]


def _snapshot(path: Path) -> dict[str, bytes | None] | None:
    """Every file under ``path`` with its bytes and every folder (None when ``path`` does not
    exist): an empty folder left behind is a change too."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))
    }


def _the_one_line(proc) -> str:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and len(lines[0]) > len("error: ") + 10, lines[0]
    return lines[0]


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, case, request):
    if case.out is DONE:  # the cases on a finished run
        request.getfixturevalue("finished_template")
    args = case.args(tmp_path)
    out = case.out(tmp_path)
    before = _snapshot(out)
    proc = run_cli_here(*args) if case.cwd is None else run_cli_here(*args, cwd=case.cwd(tmp_path))
    line = _the_one_line(proc)
    assert case.fragment in line, line
    assert _snapshot(out) == before, f"{out} changed"
    if case.after is not None:
        case.after(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500")
def test_unwritable_output_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = _the_one_line(run_cli("train", "--out", str(locked / "run"), *set_args(TINY)))
        assert "cannot write" in line and not (locked / "run").exists()
    finally:
        locked.chmod(0o700)


def test_mixed_mode_folder_is_converted_not_refused(tmp_path):
    """RGB, grayscale, RGBA and palette images train together (all converted to RGB); a non-image
    file is skipped."""
    folder = _mixed_images(tmp_path / "m", broken=False)
    tiny = [o for o in TINY if not o.startswith(("data.name", "optim.batch_size"))]
    out = tmp_path / "run"
    run_cli("train", "--out", str(out), *set_args(tiny), "--data", f"imagefolder:{folder}@16",
            "--batch-size", "16", "--epochs", "1", "-q", check=True)  # fmt: skip
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    weights = load_file(str(out / "model.safetensors"))
    assert weights["backbone.stem.0.weight"].shape[1] == 3  # RGB input: grayscale was repeated
