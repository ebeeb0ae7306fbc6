"""The README as a new user reads it: its commands name real subcommands and options, its
placeholders are marked, its paths and links exist, its counts hold, and the blocks it marks as fast
run as written.

A fenced ``bash`` block preceded by ``<!-- fast -->`` (or ``<!-- fast: writes PATH ... -->``) is
smoke-sized: tiny limits, minutes at most on 2 cores, the measured time stated in the README. The
slow test runs every such block, in README order and in one fresh folder (a later block may use an
earlier one's run), and checks each exit code and each promised path. ``SELFNAS_README_TIMES=FILE``
makes it write the seconds each command took, which the README's durations cite.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from selfnas.cli import app
from tests.conftest import FASHION_MNIST, REPO

README = REPO / "README.md"
MARKER = re.compile(r"<!--\s*fast(?::\s*writes\s+(?P<writes>[^>]*?))?\s*-->")
#: folders of the repository that README paths point into
REPO_DIRS = ("selfnas", "tests", "benchmarks", "docs", "examples", ".ci")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # 1-based line of the opening fence
    fast: bool
    writes: tuple[str, ...]


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, with the fast marker on the line before its fence (if any)."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.search(lines[i - 1]) if i else None
        writes = tuple((marker.group("writes") or "").split()) if marker else ()
        found.append(Block(fence.group(1), "\n".join(lines[i + 1 : end]) + "\n", i + 1, bool(marker), writes))
        i = end + 1
    return found


def shell_commands(body: str) -> list[list[str]]:
    """The simple commands of a bash block as token lists: continuation lines joined, comments and
    heredoc bodies dropped, split at ``&&``, ``||``, ``|`` and ``;``."""
    joined = re.sub(r"\\\n", " ", body)
    commands: list[list[str]] = []
    heredoc: str | None = None
    for line in joined.splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if here := re.search(r"<<-?\s*'?(\w+)'?", line):
            heredoc = here.group(1)
            line = line[: here.start()]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.commenters = "#"
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in ("&&", "||", "|", ";", "&"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [c for c in commands if c]


def selfnas_invocations(tokens: list[str]) -> list[str] | None:
    """The arguments after ``selfnas`` (or ``-m selfnas.cli`` under torchrun / python), else None."""
    if tokens[0] == "selfnas":
        return tokens[1:]
    if "-m" in tokens and tokens[tokens.index("-m") + 1 : tokens.index("-m") + 2] == ["selfnas.cli"]:
        return tokens[tokens.index("-m") + 2 :]
    return None


def readme_bash() -> list[Block]:
    return [b for b in blocks(README.read_text(encoding="utf-8")) if b.lang == "bash"]


def test_the_parser_reads_markers_continuations_comments_and_heredocs():
    text = "x\n<!-- fast: writes a.json runs/b -->\n```bash\nselfnas eval r \\\n  --quiet  # c\n```\n"
    text += "```bash\npython - <<'EOF'\nprint('--nope')\nEOF\nselfnas draw g && selfnas info r\n```\n"
    first, second = blocks(text)
    assert first.fast and first.writes == ("a.json", "runs/b") and first.line == 3
    assert shell_commands(first.body) == [["selfnas", "eval", "r", "--quiet"]]
    assert not second.fast
    assert shell_commands(second.body) == [
        ["python", "-"],
        ["selfnas", "draw", "g"],
        ["selfnas", "info", "r"],
    ]


def test_every_readme_command_names_a_real_subcommand_and_real_options():
    group = typer.main.get_command(app)
    checked = 0
    for block in readme_bash():
        for tokens in shell_commands(block.body):
            args = selfnas_invocations(tokens)
            if not args or args[0].startswith("-"):
                continue
            command = group.commands.get(args[0])  # type: ignore[attr-defined]
            assert command is not None, f"README line {block.line}: no command selfnas {args[0]}"
            known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            for arg in args[1:]:
                if arg.startswith("--"):
                    assert arg.split("=")[0] in known, (
                        f"README line {block.line}: selfnas {args[0]} has no {arg}"
                    )
            checked += 1
    assert checked > 40  # the README's commands were found


def test_placeholders_are_marked_and_nothing_is_elided():
    """A value to fill in is written ``<like-this>``; no command holds ``...`` or a made-up path."""
    for block in readme_bash():
        for tokens in shell_commands(block.body):
            for token in tokens:
                assert "..." not in token and "…" not in token, f"README line {block.line}: {tokens}"
                assert "/path/to" not in token and token != "my.toml", f"README line {block.line}: {token}"
    assert "<like-this>" in README.read_text(encoding="utf-8")  # the convention is stated


def test_fast_blocks_name_no_placeholder_and_promise_relative_paths():
    fast = [b for b in readme_bash() if b.fast]
    assert len(fast) >= 3
    for block in fast:
        assert "<" not in block.body.replace("<<'EOF'", ""), f"README line {block.line}: a placeholder"
        assert all(not Path(p).is_absolute() for p in block.writes)


def test_paths_and_links_in_the_readme_exist():
    text = README.read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"\w+:", t)]
    named = re.findall(rf"(?<![\w/.-])((?:{'|'.join(map(re.escape, REPO_DIRS))})/[\w./-]*\w/?)", text)
    assert links and len(named) > 20
    missing = sorted({p for p in [*links, *named] if not (REPO / p.split("#")[0]).exists()})
    assert not missing, f"README names paths that do not exist: {missing}"


def test_the_readme_states_the_test_options_and_the_slow_count_as_they_are():
    text = README.read_text(encoding="utf-8")
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    workers = re.search(r"-n \S+ --maxprocesses \d+", addopts).group(0)
    assert f"`{workers}`" in text, f"the README should state the worker options {workers!r}"
    said = re.search(r"(\d+) slow end-to-end tests", text)
    assert said, "the README states how many slow tests there are"
    files = sorted(str(p) for p in (REPO / "tests").rglob("test_*.py") if "mark.slow" in p.read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "slow", "-n", "0", "-p", "no:randomly",
         "-p", "no:cacheprovider", *files],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    collected = re.search(r"(\d+)/\d+ tests collected", proc.stdout)
    assert collected, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert said.group(1) == collected.group(1)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")
def test_the_fast_blocks_run_as_written(tmp_path):
    (tmp_path / "examples").symlink_to(REPO / "examples")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, PATH=path)
    stamp = "PS4='+ ${EPOCHREALTIME} '\n"  # bash -x stamps each command (root's bash ignores PS4 in env)
    seconds: dict[str, list[tuple[str, float]]] = {}
    for block in (b for b in readme_bash() if b.fast):
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-x", "-c", stamp + block.body + "true\n"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        seconds[f"README line {block.line}"] = command_seconds(proc.stderr)
        assert proc.returncode == 0, f"README line {block.line} failed:\n{proc.stderr[-3000:]}"
        for promised in block.writes:
            assert (tmp_path / promised).exists(), f"README line {block.line} promised {promised}"
    if os.environ.get("SELFNAS_README_TIMES"):
        Path(os.environ["SELFNAS_README_TIMES"]).write_text(json.dumps(seconds, indent=1) + "\n")


def command_seconds(trace: str) -> list[tuple[str, float]]:
    """Each traced command of a ``bash -x`` run with ``PS4="+ ${EPOCHREALTIME} "`` and the seconds
    until the next one started (the block ends with ``true``, so the last real command is timed)."""
    stamped = [m.groups() for m in re.finditer(r"^\++ (\d+\.\d+) (.*)$", trace, re.M)]
    return [
        (cmd, round(float(b) - float(a), 1)) for (a, cmd), (b, _) in zip(stamped, stamped[1:], strict=False)
    ]
