"""A head-search report renders in headless Chromium: a real picture, and nothing in the console.

The report has no JavaScript and a Content-Security-Policy that allows only ``data:``
images, so Chromium logs a console line for every script error ("Uncaught ...") and for
every load the page attempts beyond its embedded images ("... violates the following
Content Security Policy directive"). Chromium 156 logs both as ``INFO:CONSOLE`` lines and
logs nothing for a missing image without the policy; the second test shows that the check
catches both kinds of fault.
"""

import json
import re
import shutil
import subprocess
import unicodedata
from html import unescape
from pathlib import Path

import pytest
from PIL import Image

from selfnas.config import build_config
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.report.write import write_report
from selfnas.rundir import RunDir
from tests.conftest import TINY, missing

CHROMIUM = Path("/usr/bin/chromium")
CONSOLE_FAULTS = (":CONSOLE", "Uncaught", "Failed to load resource", "Content Security Policy")


def render(page: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """Screenshot ``page`` in headless Chromium; returns the PNG and the console lines it logged."""
    shot = tmp_path / f"{page.stem}.png"
    proc = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    return shot, [line for line in lines if any(fault in line for fault in CONSOLE_FAULTS)]


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    """The browser; without it every test here skips (under ``CI=true`` fails)."""
    if not CHROMIUM.exists():
        missing(f"headless Chromium ({CHROMIUM})", "apt-get install -y chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
def report(chromium, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("browser") / "search"
    overrides = [*TINY, "search.projector_layers=3", "search.predictor_layers=2", "run.knn_every=0"]
    HeadSearchTrainer(build_config(overrides=overrides), RunDir.prepare(run), quiet=True).fit()
    return write_report(run)[0]


def test_report_renders_without_console_errors(report, tmp_path):
    shot, faults = render(report, tmp_path)
    assert faults == []
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2000)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text, badges, the head diagram and the heatmaps, not a blank page
    white = next((n for n, c in colours if c == (255, 255, 255)), 0)
    assert white < 0.95 * image.size[0] * image.size[1]


def test_console_check_catches_broken_pages(report, tmp_path):
    html = report.read_text()
    with_faults = html.replace("<main>", '<main><img src="missing.png"><script>undefinedFunction()</script>')
    (tmp_path / "broken.html").write_text(with_faults)
    _, faults = render(tmp_path / "broken.html", tmp_path)
    assert any("missing.png" in f and "Content Security Policy" in f for f in faults), faults
    assert any("inline script" in f and "Content Security Policy" in f for f in faults), faults
    (tmp_path / "no-policy.html").write_text("<html><body><script>undefinedFunction()</script></body></html>")
    _, faults = render(tmp_path / "no-policy.html", tmp_path)
    assert any("Uncaught ReferenceError" in f for f in faults), faults


#: gathers what the page shows as text, pseudo-element content included (the nav separators are
#: CSS ``::before`` content), into one element that ``--dump-dom`` prints
TEXT_PROBE = """<script>
const parts = [document.body.innerText];
for (const el of document.querySelectorAll("*")) {
  for (const pseudo of ["::before", "::after"]) {
    const c = getComputedStyle(el, pseudo).content;
    if (c && c !== "none" && c !== "normal") parts.push(c);
  }
}
const out = document.createElement("pre");
out.id = "rendered-text";
out.textContent = JSON.stringify(parts);
document.body.appendChild(out);
</script>"""


def rendered_text(page: Path, tmp_path: Path) -> list[str]:
    """The text Chromium renders for ``page``: its visible text and every ::before / ::after
    content. The page's policy forbids scripts, so a copy without it carries the probe."""
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    probe = tmp_path / f"{page.stem}-text.html"
    probe.write_text(html.replace("</body>", TEXT_PROBE + "</body>"))
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-text'}", "--dump-dom", probe.resolve().as_uri()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="rendered-text">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stdout[-2000:]
    return json.loads(unescape(found.group(1)))


def bad_glyphs(texts: list[str]) -> list[str]:
    """Control characters (other than line breaks and tabs) and replacement glyphs, in context."""
    bad = []
    for text in texts:
        for i, ch in enumerate(text):
            if ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\n\t\r"):
                bad.append(repr(text[max(0, i - 10) : i + 10]))
    return bad


@pytest.fixture(scope="module")
def nested_report(report, tmp_path_factory) -> Path:
    """A directory of two runs: its navigation nests, so it shows the separators."""
    root = tmp_path_factory.mktemp("nested")
    for name in ("found", "hand"):
        shutil.copytree(report.parent, root / name)
    return write_report(root)[0]


def test_rendered_text_has_no_control_characters_or_replacement_glyphs(nested_report, tmp_path):
    texts = rendered_text(nested_report, tmp_path)
    assert "Head search" in texts[0]  # the probe saw the page
    assert bad_glyphs(texts) == []
    assert '"·"' in texts  # the navigation separator renders as a middle dot


def test_text_check_catches_the_old_separator(nested_report, tmp_path):
    """The separator as it once was written (a non-raw Python string turned \\00b7 into a NUL
    byte): the browser renders a replacement glyph, which the check finds."""
    html = nested_report.read_text().replace('content: "\\00b7"', 'content: "\x00b7"')
    assert "\x00" in html
    (tmp_path / "old.html").write_text(html)
    assert bad_glyphs(rendered_text(tmp_path / "old.html", tmp_path)) != []


@pytest.fixture(scope="module")
def pipeline_report(report, tmp_path_factory) -> Path:
    """A backbone pipeline's directory (``selfnas quickstart``): four stages and its summary.json."""
    from selfnas.io import atomic_write_json

    root = tmp_path_factory.mktemp("pipeline")
    for name in ("search", "found", "default", "random"):
        shutil.copytree(report.parent, root / name)
    (root / "pipeline.yaml").write_text("method: {}\n")

    def side(knn: float, linear: float) -> dict:
        return {"knn": {"val": knn, "test": knn}, "linear": {"val": linear, "test": linear},
                "feature_dim": 64, "head_params": 100, "params": 4000, "flops": 5_000_000}  # fmt: skip

    atomic_write_json(root / "summary.json", {
        "method": "simsiam", "data": "synthetic", "space": "cells", "seeds": 1,
        "found": side(0.60, 0.72), "default": side(0.62, 0.70), "random": side(0.53, 0.67),
        "search": {"score": "view_retrieval", "trials": {"COMPLETE": 1}, "screen": {"candidates": 16}},
        "default_rule": "resnet_small widened", "costs": {"search": 60.0, "found": 90.0},
    })  # fmt: skip
    return write_report(root)[0]


def test_backbone_pipeline_report_renders_its_lead_in_chromium(pipeline_report, tmp_path):
    _, faults = render(pipeline_report, tmp_path)
    assert faults == []
    texts = rendered_text(pipeline_report, tmp_path)
    page = texts[0]
    first, second = page.index("Verdict: found backbone"), page.rindex("Verdict: found backbone")
    assert first < second < page.index("Searched the cells space")  # both verdicts lead the page
    assert (
        "than the hand-crafted backbone" in page[first:second] and "than the random backbone" in page[second:]
    )
    assert "found (searched)" in page and "Cost of each stage" in page
    assert bad_glyphs(texts) == []
