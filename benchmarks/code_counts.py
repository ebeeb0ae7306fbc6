"""Counts of how settings and names travel through ``selfnas/``, read from the source (no imports).

Prints JSON: for each measure, its count and the places (``file:line``) it counted::

    python benchmarks/code_counts.py            # counts and places
    python benchmarks/code_counts.py --counts   # counts only
    python benchmarks/code_counts.py --counts /tmp/old/selfnas   # another checkout's package

Measures (each an AST pattern, so comments and docstrings never count):

* ``method_name_lookups``: an SSL method looked up by its name string: a subscript of a table keyed
  by method name (``METHOD_RECORDS[...]``, ``NASIAM_HEADS[...]``), a membership test against such a
  table, a comparison with a method-name literal (``method == "simclr"``), a call of a name -> record
  / class function (``method_record(...)``, ``METHODS.get(...)``), and a method's name string handed to
  a call (``f(config.method.name)``, ``f(m.name)`` with ``m`` a method config);
* ``create_method_calls``: call sites of ``create_method``;
* ``method_default_places``: places that hold a method's defaults: a table keyed by method names, a
  ``{"name": <method>}`` default, a keyword default of an SSL class's ``__init__`` and a class-level
  setting of an SSL class (``paper_per_view_bn``), a method record built (``MethodRecord(...)``);
* ``score_direction_uses``: the score's direction applied or undone outside the score records:
  ``DIRECTION[...]``, ``DIRECTION.get(...)``, ``<record>.direction`` read;
* ``score_family_derivations``: a score family written out or derived outside the score records: a
  literal tuple or list of exactly one family's names, a ``family_names(...)`` call, a comparison
  of a ``.family`` with a family literal;
* ``functions_over_80_lines``: functions (methods included) longer than 80 lines.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "selfnas"

METHOD_NAMES = {"simsiam", "simclr", "moco", "byol"}
METHOD_TABLES = {"METHOD_RECORDS", "METHOD_SPECS", "NASIAM_HEADS", "NASIAM_OUT_DIMS"}
NAME_TO_RECORD = {"method_record", "method_spec"}


def _score_families(package: Path) -> dict[str, frozenset[str]]:
    """Each score family's names, read from the record table of ``score_records.py``
    (``_R(name, direction, family, ...)`` calls)."""
    tree = ast.parse((package / "score_records.py").read_text(encoding="utf-8"))
    families: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("_R", "ScoreRecord"):
            name, family = (getattr(a, "value", None) for a in node.args[:3:2])
            if isinstance(name, str) and isinstance(family, str):
                families.setdefault(family, set()).add(name)
    return {k: frozenset(v) for k, v in families.items()}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of a Name / Attribute chain, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_method_name(node: ast.AST) -> bool:
    """Whether ``node`` reads a method's name string: ``<...>.method.name`` or ``m.name``."""
    dotted = _dotted(node)
    return dotted.endswith(".method.name") or dotted == "m.name" or dotted == "method.name"


def _is_method_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in METHOD_NAMES


def _callee(node: ast.Call) -> str:
    return _dotted(node.func).rsplit(".", 1)[-1] if _dotted(node.func) else ""


def _ssl_class_defaults(tree: ast.Module) -> list[int]:
    """Lines of keyword defaults of ``__init__`` and class-level settings of the SSL classes."""
    lines = []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        bases = {_dotted(b).rsplit(".", 1)[-1] for b in cls.bases}
        if not bases & {"SSLMethod", "SimSiam", "SimCLR", "MoCo", "BYOL"} and cls.name != "SSLMethod":
            continue
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                lines += [d.lineno for d in item.args.defaults if not _is_none(d)]
                lines += [d.lineno for d in item.args.kw_defaults if d is not None and not _is_none(d)]
            elif isinstance(item, ast.Assign) or (isinstance(item, ast.AnnAssign) and item.value is not None):
                target = item.target if isinstance(item, ast.AnnAssign) else item.targets[0]
                if _dotted(target) == "paper_per_view_bn":
                    lines.append(item.lineno)
    return lines


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def count_file(
    path: Path, families: dict[str, frozenset[str]], package: Path = PACKAGE
) -> dict[str, list[int]]:
    """The lines of each measure in one file of ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, list[int]] = {k: [] for k in MEASURES}
    in_records = path.name in ("methods.py", "score_records.py") and path.parent == package
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            if _dotted(node.value) in METHOD_TABLES:
                found["method_name_lookups"].append(node.lineno)
            if _dotted(node.value).rsplit(".", 1)[-1] == "DIRECTION":
                found["score_direction_uses"].append(node.lineno)
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) and any(
                _dotted(o) in METHOD_TABLES for o in node.comparators
            ):
                found["method_name_lookups"].append(node.lineno)
            elif any(_is_method_literal(o) for o in operands):
                found["method_name_lookups"].append(node.lineno)
            if (
                not in_records
                and any(_dotted(o).endswith(".family") for o in operands)
                and any(isinstance(o, ast.Constant) and o.value in families for o in operands)
            ):
                found["score_family_derivations"].append(node.lineno)
        elif isinstance(node, ast.Call):
            name = _callee(node)
            if name in NAME_TO_RECORD or _dotted(node.func) == "METHODS.get":
                found["method_name_lookups"].append(node.lineno)
            elif any(_is_method_name(a) for a in [*node.args, *(k.value for k in node.keywords)]):
                found["method_name_lookups"].append(node.lineno)
            if name == "create_method":
                found["create_method_calls"].append(node.lineno)
            if name == "MethodRecord":
                found["method_default_places"].append(node.lineno)
            if _dotted(node.func).endswith("DIRECTION.get"):
                found["score_direction_uses"].append(node.lineno)
            if name == "family_names" and not in_records:
                found["score_family_derivations"].append(node.lineno)
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None]
            if any(_is_method_literal(k) for k in keys):
                found["method_default_places"].append(node.lineno)
            elif any(
                isinstance(k, ast.Constant) and k.value == "name" and _is_method_literal(v)
                for k, v in zip(node.keys, node.values, strict=True)
            ):
                found["method_default_places"].append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == "direction" and isinstance(node.ctx, ast.Load):
            if not in_records:
                found["score_direction_uses"].append(node.lineno)
        elif isinstance(node, ast.Tuple | ast.List):
            strings = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(strings) == len(node.elts) and frozenset(strings) in families.values():
                found["score_family_derivations"].append(node.lineno)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 80:
                found["functions_over_80_lines"].append(node.lineno)
    if path.parent == package / "ssl":
        found["method_default_places"] += _ssl_class_defaults(tree)
    return found


MEASURES = (
    "method_name_lookups",
    "create_method_calls",
    "method_default_places",
    "score_direction_uses",
    "score_family_derivations",
    "functions_over_80_lines",
)


def counts(package: Path = PACKAGE) -> dict[str, dict[str, object]]:
    """``{measure: {"count": n, "files": k, "places": ["selfnas/x.py:12", ...]}}`` over the package."""
    families = _score_families(package)
    places: dict[str, list[str]] = {k: [] for k in MEASURES}
    for path in sorted(package.rglob("*.py")):
        for measure, lines in count_file(path, families, package).items():
            rel = path.relative_to(package.parent).as_posix()
            places[measure] += [f"{rel}:{line}" for line in sorted(set(lines))]
    return {
        k: {"count": len(v), "files": len({p.rsplit(":", 1)[0] for p in v}), "places": v}
        for k, v in places.items()
    }


def main(argv: list[str]) -> None:
    """``[--counts] [PACKAGE_DIR]``: the counts of ``selfnas/`` here, or of another checkout's."""
    dirs = [Path(a) for a in argv if not a.startswith("--")]
    result = counts(dirs[0].resolve() if dirs else PACKAGE)
    if "--counts" in argv:
        result = {k: {"count": v["count"], "files": v["files"]} for k, v in result.items()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
