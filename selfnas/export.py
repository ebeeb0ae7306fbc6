"""Export a run's pretrained backbone for use without selfnas.

OUT/
  backbone.pt2           torch.export program: normalised float N x C x S x S -> N x F; needs only torch
  backbone.onnx          the same program as ONNX (opset ``ONNX_OPSET``), checked against torch at export;
                         runs with onnxruntime alone, outside Python too
  backbone.safetensors   the backbone's own state dict (no ``backbone.`` / ``module.`` prefixes)
  config.yaml            the run's resolved config
  genotype.json          the heads: found by a search run, or the genotype a run was pretrained from
  MODEL_CARD.md          data, method, budget, scores, provenance and how to load it

Every file is written atomically; exporting again overwrites the same files. No TorchScript
(``backbone.pt``): torch deprecated ``torch.jit``, and what it served (C++, other runtimes, serving)
is now served by the ``.pt2`` program (AOTInductor, ExecuTorch) or by ONNX.
"""

from __future__ import annotations

import io
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from safetensors.torch import save

from selfnas.build import (
    genotype_file,
    load_pretrained,
    load_run_config,
    load_run_dataset,
    open_run,
    run_heads,
)
from selfnas.errors import ExportError, RunDirError
from selfnas.info import command_line, head_chain, run_info
from selfnas.io import atomic_write, atomic_write_bytes, atomic_write_text
from selfnas.render.markdown import md_table
from selfnas.render.tables import eval_rows
from selfnas.rundir import GENOTYPE_FILE
from selfnas.tracking import log_artifacts
from selfnas.training.builder import resolved_lr

FORMAT = "selfnas-backbone-1"


#: ONNX opset of backbone.onnx: torch's default for its exporter, run by onnxruntime >= 1.17 (2024)
ONNX_OPSET = 20
#: largest max-abs difference between backbone.onnx and the torch backbone that the export accepts
ONNX_TOLERANCE = 1e-4


def _program(backbone: torch.nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """The backbone as a ``torch.export`` program with a dynamic batch size: one trace that both
    ``backbone.pt2`` and ``backbone.onnx`` serialise, so the two files hold the same graph."""
    with torch.no_grad():
        return torch.export.export(backbone, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))


def _save_program(path: Path, program: torch.export.ExportedProgram) -> Path:
    """``.pt2``, the format torch recommends now: ``torch.export.load(path).module()`` runs it
    without the defining code."""
    buffer = io.BytesIO()  # torch.export.save warns about a temp file's name that does not end in .pt2
    torch.export.save(program, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def _onnx_features(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Features (N x F, float32) of the ONNX backbone at ``path`` on normalised ``images`` (N x C x S x S)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a few images: no thread pool worth starting
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["features"], {"images": images.astype(np.float32)})[0]


def _check_onnx(path: str | Path, reference: torch.nn.Module, input_shape: list[int]) -> None:
    """Refuse the ONNX backbone at ``path`` if it is more than ``ONNX_TOLERANCE`` (max abs) from
    ``reference`` on a seeded input of 3 images: another batch size than the traced 2, so the
    dynamic batch axis is checked too, and few enough that the check costs milliseconds."""
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x).numpy()
    diff = float(np.abs(_onnx_features(path, x.numpy()) - expected).max())
    if not diff <= ONNX_TOLERANCE:  # also refuses NaN
        raise ExportError(
            f"the ONNX export differs from the torch backbone by {diff:.3g} (max abs, limit "
            f"{ONNX_TOLERANCE:g}): reinstall the tested versions (pip install -c constraints.txt -e .) "
            "or report the backbone as a selfnas bug"
        )


def save_onnx(
    path: Path, program: torch.export.ExportedProgram, reference: torch.nn.Module, input_shape: list[int]
) -> Path:
    """``program`` as ONNX at ``path`` (input ``images`` N x C x S x S, output ``features`` N x F, batch
    axis ``batch``), checked against ``reference`` before it is renamed into place: a model that
    does not match is never left behind.

    The torch.export-based exporter (``dynamo=True``, needs ``onnxscript``) is the one torch supports
    and defaults to since 2.9; the TorchScript-based one warns that it will be removed."""
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        opset_version=ONNX_OPSET,
        input_names=["images"],
        output_names=["features"],
        dynamic_shapes=({0: "batch"},),
        verbose=False,  # no progress lines on stdout
    )

    def write(tmp: str) -> None:
        onnx_program.save(tmp, external_data=False)  # one file: a backbone is far below protobuf's 2 GB
        _check_onnx(tmp, reference, input_shape)

    return atomic_write(path, write)


def export_run(run_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the export of ``run_dir`` into ``out_dir``; returns what was written and the input spec."""
    run = open_run(run_dir)
    out = Path(out_dir)
    if out.resolve() == run.path.resolve():
        raise RunDirError(f"export {run.path} into another folder than the run itself")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory; choose another export folder")
    config = load_run_config(run)
    backbone = load_pretrained(run.path)
    data = load_run_dataset(run.path, train_limit=1)  # image size and normalisation, not the images
    channels, size = data.train.channels, data.train.size
    spec: dict[str, Any] = {
        "backbone": config.model.backbone,
        "backbone_kwargs": config.model.backbone_kwargs,
        "input_shape": [channels, size, size],
        "mean": list(data.mean),
        "std": list(data.std),
        "feature_dim": int(backbone.out_dim),
        "parameters": sum(p.numel() for p in backbone.parameters()),
    }
    example = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    program = _program(backbone, example)
    # ONNX first: if its check fails, nothing of this export has been written
    files = [save_onnx(out / "backbone.onnx", program, backbone, spec["input_shape"])]
    files.append(_save_program(out / "backbone.pt2", program))
    metadata = {"format": FORMAT, **{k: json.dumps(v) for k, v in spec.items()}}
    state = {k: v.detach().contiguous() for k, v in backbone.state_dict().items()}
    # bytes through atomic_write_bytes: safetensors' save_file would leave the file mode 0600
    files.append(atomic_write_bytes(out / "backbone.safetensors", save(state, metadata=metadata)))
    files.append(atomic_write_bytes(out / "config.yaml", run.config.read_bytes()))
    found = genotype_file(run)
    if found is not None:
        files.append(atomic_write_bytes(out / GENOTYPE_FILE, found.read_bytes()))
    elif config.method.projector is not None:  # pretrained from a genotype (`train --genotype`)
        heads = run_heads(run)
        assert heads is not None  # a training run with explicit heads always has them
        files.append(atomic_write_text(out / GENOTYPE_FILE, json.dumps(heads.to_json(), indent=2) + "\n"))
    files.append(atomic_write_text(out / "MODEL_CARD.md", model_card(run.path, spec)))
    log_artifacts(run, [out / "backbone.safetensors", out / GENOTYPE_FILE, out / "MODEL_CARD.md"], "export")
    return {"out_dir": str(out), "files": [p.name for p in files], "onnx_opset": ONNX_OPSET, **spec}


def _python_kwargs(kwargs: dict[str, Any]) -> str:
    return "".join(f", {k}={v!r}" for k, v in kwargs.items())


def _scores(evaluation: dict[str, Any]) -> list[str]:
    """Markdown table of kNN and linear-probe accuracy per held-out split."""
    if not evaluation:
        return ["Not evaluated yet: `selfnas eval RUN_DIR` writes the scores."]
    return [
        *md_table(*eval_rows(evaluation)),
        "",
        f"Frozen features on `{evaluation['data']}`; nothing was selected on the test split.",
    ]


def model_card(run_path: Path, spec: dict[str, Any]) -> str:
    """The export's MODEL_CARD.md (markdown) for the run at ``run_path`` with input ``spec``."""
    info = run_info(run_path)
    config = load_run_config(open_run(run_path))
    prov = info["provenance"]
    c, s, _ = spec["input_shape"]
    lr, wd = resolved_lr(config)
    mean, std = [round(v, 6) for v in spec["mean"]], [round(v, 6) for v in spec["std"]]
    heads = run_heads(open_run(run_path))
    if heads is None:
        heads_line = "- heads: a search supernet that has not written genotype.json yet (not in the export)"
    else:
        kind = "found by the search" if info["genotype"] else "used in pretraining"
        heads_line = f"- heads {kind} (not in the export): projector {head_chain(heads.projector.to_json())}"
        if heads.predictor is not None:
            heads_line += f"; predictor {head_chain(heads.predictor.to_json())}"
    lines = [
        f"# {config.method.name} {spec['backbone']} on {config.data.name}",
        "",
        f"A backbone pretrained with self-supervised learning ({config.method.name}, no labels), "
        f"exported by selfnas from the run `{run_path.name}`.",
        "",
        "## Model",
        "",
        f"- backbone: `{spec['backbone']}` `{json.dumps(spec['backbone_kwargs'])}`, "
        f"{spec['parameters']:,} parameters",
        f"- input: float N x {c} x {s} x {s} (any N), per channel `(pixel / 255 - mean) / std`, "
        f"mean {mean}, std {std}",
        f"- output: N x {spec['feature_dim']} features (global average pooled)",
        f"- exported with torch {torch.__version__} and onnxscript {version('onnxscript')} (ONNX opset "
        f"{ONNX_OPSET}), checked with onnxruntime {onnxruntime.__version__}",
        heads_line,
        "",
        "## Training",
        "",
        f"- data: `{config.data.name}` (validation fraction {config.data.val_fraction:g}, "
        f"train limit {config.data.train_limit or 'none'})",
        f"- method: {config.method.name}, hyper-parameters {json.dumps(config.method.hparams)}",
        f"- budget: {config.optim.epochs:g} epochs x batch {config.optim.batch_size}, "
        f"{config.optim.optimizer} peak LR {lr:g}, weight decay {wd:g}",
        f"- seed: {prov.get('seed', config.run.seed)}",
        f"- command: `{command_line(prov.get('command', [])) or 'unknown'}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in prov.get('versions', {}).items()) or 'unknown'}",
    ]
    if config.search is not None:
        lines.append(
            f"- search: {config.search.space} space, {config.search.strategy} order {config.search.order}, "
            f"ops {', '.join(config.search.ops)}"
        )
    lines += ["", "## Scores on held-out splits", "", *_scores(info["eval"]), ""]
    lines += ["## Load it", "", *_loading(spec, mean, std)]
    return "\n".join(lines)


def _loading(spec: dict[str, Any], mean: list[float], std: list[float]) -> list[str]:
    """The card's "Load it" section: one runnable snippet per file, each needing only what it names.
    Each snippet's ``images = ...  # your images`` line is the one a user (or a test) replaces."""
    c, s, _ = spec["input_shape"]
    f, kwargs = spec["feature_dim"], _python_kwargs(spec["backbone_kwargs"])
    return [
        "With torch alone (no selfnas), from the `torch.export` program:",
        "",
        "```python",
        "import torch",
        "",
        'backbone = torch.export.load("backbone.pt2").module()',
        f"mean = torch.tensor({mean}).view(1, -1, 1, 1)",
        f"std = torch.tensor({std}).view(1, -1, 1, 1)",
        f"images = torch.zeros(8, {c}, {s}, {s}, dtype=torch.uint8)  # your images, N x C x H x W",
        "with torch.no_grad():",
        f"    features = backbone((images.float() / 255 - mean) / std)  # 8 x {f}",
        "```",
        "",
        f"With onnxruntime alone (no torch), from the ONNX model (opset {ONNX_OPSET}, input `images`, "
        f"output `features`; checked at export to match the torch backbone within {ONNX_TOLERANCE:g}):",
        "",
        "```python",
        "import numpy as np",
        "import onnxruntime as ort",
        "",
        'session = ort.InferenceSession("backbone.onnx", providers=["CPUExecutionProvider"])',
        f"mean = np.array({mean}, dtype=np.float32).reshape(1, -1, 1, 1)",
        f"std = np.array({std}, dtype=np.float32).reshape(1, -1, 1, 1)",
        f"images = np.zeros((8, {c}, {s}, {s}), dtype=np.uint8)  # your images, N x C x H x W",
        "x = (images.astype(np.float32) / 255 - mean) / std",
        f'features = session.run(["features"], {{"images": x}})[0]  # 8 x {f}',
        "```",
        "",
        "The weights into selfnas's backbone definition:",
        "",
        "```python",
        "from safetensors.torch import load_file",
        "from selfnas.models.backbones import create_backbone",
        "",
        f'backbone = create_backbone("{spec["backbone"]}", in_channels={c}{kwargs})',
        'backbone.load_state_dict(load_file("backbone.safetensors"))',
        "backbone.eval()  # BatchNorm with its running statistics",
        "```",
        "",
    ]
