"""A head-search report renders in headless Chromium: a real picture, and nothing in the console.

The report has no JavaScript and a Content-Security-Policy that allows only ``data:``
images, so Chromium logs a console line for every script error ("Uncaught ...") and for
every load the page attempts beyond its embedded images ("... violates the following
Content Security Policy directive"). Chromium 156 logs both as ``INFO:CONSOLE`` lines and
logs nothing for a missing image without the policy; the second test shows that the check
catches both kinds of fault.
"""

import subprocess
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
