"""The TensorBoard tracker: event files under RUN/tensorboard/ (a search's trials in
RUN/tensorboard/trials/NNNN/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfnas.tracking.records import metric_values, trial_architecture

FOLDER = "tensorboard"
#: the drawing of the found architecture that ``selfnas report`` leaves in the run
ARCHITECTURE_PNG = Path("plots") / "architecture.png"


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, run_path: Path, section: dict[str, Any], context: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self._writer_class = SummaryWriter
        self.folder = run_path / FOLDER
        self.writer = SummaryWriter(log_dir=str(self.folder))
        if not section.get("hparams"):
            self._hparams(context["params"])
            section["hparams"] = True

    def _hparams(self, params: dict[str, str]) -> None:
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(params, {}):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def log_artifacts(self, paths: list[Path], step: int, folder: str | None = None) -> None:
        """The evaluation table (from eval.json) as text, the architecture drawing as an image."""
        for path in paths:
            if path.name == "eval.json":
                self.writer.add_text("eval", _table(json.loads(path.read_text(encoding="utf-8"))), step)
            elif path.name == ARCHITECTURE_PNG.name:
                self._image(path, step)
        self.writer.flush()

    def _image(self, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image("architecture", pixels, step, dataformats="HWC")

    def log_trial(self, row: dict[str, Any], best: bool) -> str:
        """One trial's own event folder: its value, scores, state and architecture; returns it."""
        folder = self.folder / "trials" / f"{row['number']:04d}"
        writer = self._writer_class(log_dir=str(folder))
        try:
            if row.get("value") is not None:
                writer.add_scalar("trial/value", row["value"], row["number"])
            for name, value in metric_values({"kind": "trial", **_trial_numbers(row)}).items():
                writer.add_scalar(name, value, row["number"])
            writer.add_text("trial/state", row["state"], row["number"])
            writer.add_text("trial/architecture", trial_architecture(row), row["number"])
        finally:
            writer.close()
        return str(folder)

    def mark_best(self, row: dict[str, Any], trial_ref: str, previous: str | None) -> None:
        self.writer.add_text("study/best_trial", f"trial {row['number']}: {trial_architecture(row)}", 0)
        if row.get("value") is not None:
            self.writer.add_scalar("study/best_value", row["value"], row["number"])
        self.writer.flush()

    def close(self, state: str) -> None:
        self.writer.close()


def _trial_numbers(row: dict[str, Any]) -> dict[str, Any]:
    return {"scores": row.get("scores") or {}, "accuracy": row.get("accuracy") or {}}


def _table(result: dict[str, Any]) -> str:
    """eval.json's kNN and linear-probe results as a Markdown table (metric x held-out split)."""
    lines = ["| metric | val | test |", "| --- | --- | --- |"]
    for name in ("knn", "linear"):
        section = result.get(name)
        if isinstance(section, dict):
            cells = [section.get(split) for split in ("val", "test")]
            shown = [f"{100 * v:.2f}%" if isinstance(v, int | float) else "-" for v in cells]
            lines.append(f"| {name} | {shown[0]} | {shown[1]} |")
    return "\n".join(lines)
