"""Export a run's pretrained backbone for use without selfnas.

OUT/
  backbone.pt2           torch.export program: normalised float N x C x S x S -> N x F; needs only torch
  backbone.pt            the same as TorchScript (deprecated by torch, kept for older tools)
  backbone.safetensors   the backbone's own state dict (no ``backbone.`` / ``module.`` prefixes)
  config.yaml            the run's resolved config
  genotype.json          the heads: found by a search run, or the genotype a run was pretrained from
  MODEL_CARD.md          data, method, budget, scores, provenance and how to load it

Every file is written atomically; exporting again overwrites the same files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

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
from selfnas.errors import RunDirError
from selfnas.info import command_line, head_chain, run_info
from selfnas.io import atomic_write, atomic_write_bytes, atomic_write_text
from selfnas.render.markdown import md_table
from selfnas.render.tables import eval_rows
from selfnas.rundir import GENOTYPE_FILE
from selfnas.training.builder import resolved_lr

FORMAT = "selfnas-backbone-1"


def _trace(backbone: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript by tracing: torch >= 2.9 calls it deprecated, yet it is still the one
    single-file program that bare ``torch.jit.load`` runs without the defining code."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.trace(backbone, example)


def _save_program(path: Path, backbone: torch.nn.Module, example: torch.Tensor) -> Path:
    """A ``torch.export`` program (``.pt2``) with a dynamic batch size: the format torch
    recommends now; ``torch.export.load(path).module()`` runs it without the defining code."""
    with torch.no_grad():
        program = torch.export.export(backbone, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    return atomic_write(path, lambda tmp: torch.export.save(program, tmp))


def _save_script(path: Path, program: torch.jit.ScriptModule) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return atomic_write(path, lambda tmp: torch.jit.save(program, tmp))


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
    files = [_save_program(out / "backbone.pt2", backbone, example)]
    files.append(_save_script(out / "backbone.pt", _trace(backbone, example)))
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
    return {"out_dir": str(out), "files": [p.name for p in files], **spec}


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
        f"- input: float N x {c} x {s} x {s}, per channel `(pixel / 255 - mean) / std`, "
        f"mean {mean}, std {std}",
        f"- output: N x {spec['feature_dim']} features (global average pooled)",
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
    lines += [
        "## Load it",
        "",
        "With torch alone (no selfnas), from the `torch.export` program (any batch size):",
        "",
        "```python",
        "import torch",
        "",
        'backbone = torch.export.load("backbone.pt2").module()',
        f"mean = torch.tensor({mean}).view(1, -1, 1, 1)",
        f"std = torch.tensor({std}).view(1, -1, 1, 1)",
        f"images = torch.zeros(8, {c}, {s}, {s}, dtype=torch.uint8)  # your images",
        "with torch.no_grad():",
        f"    features = backbone((images.float() / 255 - mean) / std)  # 8 x {spec['feature_dim']}",
        "```",
        "",
        "`backbone.pt` holds the same network as TorchScript, for older tools (torch calls "
        '`torch.jit` deprecated; `torch.jit.load("backbone.pt")` still runs it).',
        "",
        "The weights into selfnas's backbone definition:",
        "",
        "```python",
        "from safetensors.torch import load_file",
        "from selfnas.models.backbones import create_backbone",
        "",
        f'backbone = create_backbone("{spec["backbone"]}", in_channels={c}'
        f"{_python_kwargs(spec['backbone_kwargs'])})",
        'backbone.load_state_dict(load_file("backbone.safetensors"))',
        "```",
        "",
    ]
    return "\n".join(lines)
