"""Genotypes as the papers' code publishes them, read as data and validated: never ``eval``'d.

``import_genotype`` accepts a published name (:data:`PUBLISHED_GENOTYPES`), a file, or a text
holding one of:

- DARTS (quark0/darts ``cnn/genotypes.py`` and the many repos that copy it), 2 ``(op, input)``
  pairs per intermediate node, flat or per node (D-X-Y/AutoDL-Projects); ``NAME =`` may lead::

      Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
               reduce=[('max_pool_3x3', 0), ...], reduce_concat=range(2, 6))

  -> :class:`CellGenotype`. The op names are ours already; the concat must be every
  intermediate node in order (a selfnas cell outputs them all).
- NASiam (aheuillet/NASiam ``*/genotypes/*.txt``), one op per searched layer, no widths::

      Genotype(encoder=[['linear_relu'], ['identity'], ...], predictor=[['linear_hardswish'], ...])

  -> :class:`HeadGenotype`, laid out as NASiam's builders lay it out (see :func:`nasiam_heads`).
- a selfnas genotype JSON object.

The text goes through ``ast.parse`` and only literal nodes are walked: strings, ints, lists,
tuples and ``range(a, b)``. Anything else is one :class:`GenotypeError` line.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from selfnas.errors import GenotypeError
from selfnas.models.cell_genotype import MAX_NODES, CellGenotype
from selfnas.models.genotype import Genotype, HeadGenotype, genotype_from_json, save_genotype
from selfnas.models.genotype_format import header, is_int, short
from selfnas.models.heads import MAX_HEAD_LAYERS
from selfnas.models.published_genotypes import PUBLISHED_GENOTYPES

#: a published genotype is a few hundred characters; anything this long is not one
MAX_TEXT_CHARS = 100_000
MAX_RANGE = 64

DARTS_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
#: AutoDL-Projects' extra DARTS fields; only ``None`` (no extra connections) fits our cells
OPTIONAL_NONE_FIELDS = ("connectN", "connects")
NASIAM_FIELDS = ("encoder", "predictor")

#: NASiam op name -> ours. Its ``linear_*`` ops are Linear-BN-act at equal or narrowing
#: width; its pools carry a BatchNorm after the pool that ours (and the design brief) leave out.
NASIAM_HEAD_OPS = {
    "maxpool_3x3": "max_pool_3",
    "avgpool_3x3": "avg_pool_3",
    "identity": "identity",
    "linear_relu": "linear_bn_relu",
    "linear_silu": "linear_bn_silu",
    "linear_hardswish": "linear_bn_hardswish",
    "linear_elu": "linear_bn_elu",
    "linear_mish": "linear_bn_mish",
}
#: NASiam's output widths: SimSiam ``dim=2048``, MoCo ``dim=128``, SimCLR ``feature_dim=128``
NASIAM_OUT_DIMS = {"simsiam": 2048, "moco": 128, "simclr": 128}


def import_genotype(
    source: str | Path, *, backbone_dim: int = 512, out_dim: int | None = None, hidden_dim: int = 512
) -> Genotype:
    """The validated genotype named, written or stored in ``source``.

    The keywords size NASiam heads, whose notation has no widths: ``backbone_dim`` is the
    backbone's feature width (512: NASiam's CIFAR ResNet-18), ``hidden_dim`` the SimSiam
    predictor's / SimCLR projector's hidden width (NASiam: 512), ``out_dim`` the head output
    (default NASiam's: 2048 SimSiam, 128 MoCo and SimCLR). Cell genotypes ignore them.
    """
    if isinstance(source, str) and source in PUBLISHED_GENOTYPES:
        return PUBLISHED_GENOTYPES.get(source)
    text = _source_text(source)
    if text.lstrip().startswith("{"):
        return _json_genotype(text)
    fields = genotype_fields(text)
    if fields and set(fields) <= set(NASIAM_FIELDS):
        return nasiam_heads(fields, backbone_dim, out_dim, hidden_dim)
    if set(fields) & set(DARTS_FIELDS):
        return darts_cells(fields)
    raise GenotypeError(
        f"Genotype fields {sorted(fields)} are neither DARTS's ({', '.join(DARTS_FIELDS)}) "
        f"nor NASiam's ({', '.join(NASIAM_FIELDS)})"[:300]
    )


def import_genotype_to_file(
    text_or_file: str,
    out: Path,
    *,
    backbone_dim: int = 512,
    out_dim: int | None = None,
    hidden_dim: int = 512,
) -> dict[str, Any]:
    """Import ``text_or_file`` (see :func:`import_genotype`) and save it as genotype JSON at
    ``out`` (atomically; nothing is written when the import fails). Returns the JSON written."""
    genotype = import_genotype(
        text_or_file, backbone_dim=backbone_dim, out_dim=out_dim, hidden_dim=hidden_dim
    )
    save_genotype(out, genotype)
    return genotype.to_json()


def _source_text(source: str | Path) -> str:
    if isinstance(source, Path):
        return _read(source)
    if not isinstance(source, str):
        raise GenotypeError(f"a genotype source must be a text or a path, not {type(source).__name__}")
    if len(source) > MAX_TEXT_CHARS:
        raise GenotypeError(
            f"genotype text has {len(source)} characters, more than {MAX_TEXT_CHARS}: not a genotype"
        )
    if _is_file(source):
        return _read(Path(source))
    if not any(c in source for c in "({["):
        raise GenotypeError(
            f"{short(source)} is neither a published genotype ({', '.join(PUBLISHED_GENOTYPES)}), "
            "an existing file nor a Genotype(...) text"
        )
    return source


def _is_file(text: str) -> bool:
    if "\n" in text or len(text) > 4096:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the OS, a NUL byte
        return False


def _read(path: Path) -> str:
    if not path.is_file():
        raise GenotypeError(f"genotype file {short(str(path))} not found")
    size = path.stat().st_size
    if size > MAX_TEXT_CHARS:
        raise GenotypeError(f"genotype file {short(str(path))} has {size} bytes, more than {MAX_TEXT_CHARS}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(f"genotype file {short(str(path))} is not UTF-8 text") from None


def _json_genotype(text: str) -> Genotype:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise GenotypeError(f"genotype text is not valid JSON: {str(exc).splitlines()[0][:120]}") from None
    return genotype_from_json(data)


def genotype_fields(text: str) -> dict[str, Any]:
    """The keyword fields of the one ``Genotype(...)`` call in ``text`` as plain values, read
    from the syntax tree; the text is never run."""
    try:
        module = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        why = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise GenotypeError(
            f"genotype text does not parse ({str(why)[:80]}); give one Genotype(...)"
        ) from None
    if len(module.body) != 1:
        raise GenotypeError(f"genotype text holds {len(module.body)} statements; give one Genotype(...)")
    stmt = module.body[0]
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        node = stmt.value  # DARTS_V2 = Genotype(...), as in a genotypes.py
    elif isinstance(stmt, ast.Expr):
        node = stmt.value
    else:
        raise GenotypeError(f"not a genotype: {short(ast.unparse(stmt))}; give one Genotype(...)")
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Genotype"):
        raise GenotypeError(f"not a genotype: expected Genotype(...), got {short(ast.unparse(node))}")
    if node.args or any(kw.arg is None for kw in node.keywords):
        raise GenotypeError(
            "name every Genotype field: Genotype(normal=..., ...) or Genotype(encoder=..., ...)"
        )
    fields: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg in fields:
            raise GenotypeError(f"Genotype field {kw.arg!r} is given twice")
        fields[str(kw.arg)] = _literal(kw.value)
    return fields


def _literal(node: ast.expr) -> Any:
    """A literal's value: constants, -int, lists and tuples (as lists), and ``range(a[, b])``."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):  # a negative index
        value = _literal(node.operand)
        if is_int(value):
            return -value
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(item) for item in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        args = [_literal(arg) for arg in node.args]
        if node.keywords or not 1 <= len(args) <= 2 or not all(is_int(a) for a in args):
            raise GenotypeError(f"range takes 1 or 2 ints here, got {short(ast.unparse(node))}")
        values = range(*args)
        if len(values) > MAX_RANGE:
            raise GenotypeError(f"{short(ast.unparse(node))} has more than {MAX_RANGE} values: not a concat")
        return list(values)
    raise GenotypeError(
        f"a genotype text holds only literals and range(a, b), not {short(ast.unparse(node))}"
    )


def darts_cells(fields: dict[str, Any]) -> CellGenotype:
    """The DARTS ``normal / normal_concat / reduce / reduce_concat`` fields as a cell genotype."""
    extra = sorted(set(fields) - set(DARTS_FIELDS) - set(OPTIONAL_NONE_FIELDS))
    missing = sorted(set(DARTS_FIELDS) - set(fields))
    if extra or missing:
        what = f"unknown fields {extra}" if extra else f"missing fields {missing}"
        raise GenotypeError(f"DARTS Genotype has {what}; it takes {', '.join(DARTS_FIELDS)}"[:300])
    for name in OPTIONAL_NONE_FIELDS:
        if fields.get(name) is not None:
            raise GenotypeError(
                f"DARTS Genotype field {name}={short(fields[name])}: selfnas cells take no extra connections"
            )
    cells = {cell: _flat_pairs(cell, fields[cell]) for cell in ("normal", "reduce")}
    nodes = len(cells["normal"]) // 2
    if len(cells["reduce"]) != 2 * nodes:
        raise GenotypeError(
            f"DARTS normal cell has {nodes} nodes but reduce has {len(cells['reduce']) // 2}; "
            "selfnas cells share one node count"
        )
    for cell in cells:
        concat = fields[f"{cell}_concat"]
        if concat != list(range(2, 2 + nodes)):
            raise GenotypeError(
                f"DARTS {cell}_concat {short(concat)} must be range(2, {2 + nodes}), all {nodes} "
                "intermediate nodes in order: a selfnas cell outputs every node"
            )
    return CellGenotype.from_json({**header("cells"), "nodes": nodes, **cells})


def _flat_pairs(cell: str, value: Any) -> list[Any]:
    """2 pairs per node, flat (quark0/darts) or grouped per node (AutoDL-Projects), as a flat list."""
    if not isinstance(value, list) or not value:
        raise GenotypeError(f"DARTS {cell} must be a list of (op, input) pairs, got {short(value)}")
    if all(isinstance(node, list) and node and isinstance(node[0], list) for node in value):
        for i, node in enumerate(value):
            if len(node) != 2:
                raise GenotypeError(f"DARTS {cell} node {i} has {len(node)} edges; a node takes exactly 2")
        value = [pair for node in value for pair in node]
    if len(value) % 2:
        raise GenotypeError(
            f"DARTS {cell} has {len(value)} (op, input) pairs; each intermediate node takes exactly 2, "
            "so the count must be even"
        )
    if len(value) > 2 * MAX_NODES:
        raise GenotypeError(
            f"DARTS {cell} has {len(value) // 2} nodes; selfnas cells have at most {MAX_NODES}"
        )
    return value


def nasiam_heads(
    fields: dict[str, Any], backbone_dim: int = 512, out_dim: int | None = None, hidden_dim: int = 512
) -> HeadGenotype:
    """NASiam's ``encoder`` / ``predictor`` op lists as the heads its builders make of them.

    Which fields are present says the method, as in NASiam's repo: both -> SimSiam, ``encoder``
    alone -> MoCo, ``predictor`` alone -> SimCLR (whose projector NASiam calls ``predictor``).

    - SimSiam projector: the ``encoder`` layers at ``backbone_dim``, then Linear + BN without
      affine to ``out_dim``; predictor: ``out_dim -> hidden_dim -> ... -> out_dim``.
    - MoCo projector: the ``encoder`` layers at ``backbone_dim``, then Linear to ``out_dim``.
    - SimCLR projector: ``backbone_dim -> hidden_dim -> ... -> out_dim``.

    A layer that changes the width becomes what NASiam's op wrappers build: narrowing, a linear op
    stays Linear-BN-act and a parameter-free op gets Linear-BN-ReLU before it; widening, a linear
    op is a bare Linear and a parameter-free op gets a Linear before it.
    """
    genes = {name: _nasiam_ops(name, value) for name, value in fields.items()}
    method = "simsiam" if len(genes) == 2 else "moco" if "encoder" in genes else "simclr"
    out = NASIAM_OUT_DIMS[method] if out_dim is None else out_dim
    predictor = None
    if method == "simclr":
        projector = _nasiam_chain(genes["predictor"], backbone_dim, hidden_dim, out)
    else:
        final = "linear_bn_noaffine" if method == "simsiam" else "linear"
        projector = _nasiam_chain(genes["encoder"], backbone_dim, backbone_dim, backbone_dim)
        projector.append({"op": final, "dim": out})
        if method == "simsiam":
            predictor = {"layers": _nasiam_chain(genes["predictor"], out, hidden_dim, out)}
    data = {**header("heads"), "method": method, "projector": {"layers": projector}, "predictor": predictor}
    return HeadGenotype.from_json(data)


def _nasiam_ops(field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_HEAD_LAYERS:
        raise GenotypeError(
            f"NASiam {field} must be a list of 1 to {MAX_HEAD_LAYERS} one-op layers like [['linear_relu']]"
        )
    ops = []
    for i, gene in enumerate(value):
        if not (isinstance(gene, list) and len(gene) == 1 and isinstance(gene[0], str)):
            raise GenotypeError(
                f"NASiam {field} layer {i} must be one op in a list like ['linear_relu'], got {short(gene)}"
            )
        if gene[0] not in NASIAM_HEAD_OPS:
            raise GenotypeError(
                f"NASiam {field} layer {i}: unknown op {short(gene[0])}; known: {', '.join(NASIAM_HEAD_OPS)}"
            )
        ops.append(gene[0])
    return ops


def _nasiam_chain(ops: list[str], dim: int, hidden: int, out: int) -> list[dict[str, Any]]:
    """NASiam's ``Cell(dim, genes, hidden, out)``: layer 0 maps dim -> hidden (even when it is also
    the last), the last maps hidden -> out, the others hidden -> hidden."""
    layers: list[dict[str, Any]] = []
    for i, op in enumerate(ops):
        d_in, d_out = (dim, hidden) if i == 0 else (hidden, out if i == len(ops) - 1 else hidden)
        ours = NASIAM_HEAD_OPS[op]
        if op.startswith("linear_"):
            layers.append({"op": "linear" if d_in < d_out else ours, "dim": d_out})
            continue
        if d_in != d_out:
            layers.append({"op": "linear_bn_relu" if d_in > d_out else "linear", "dim": d_out})
        layers.append({"op": ours, "dim": d_out})
    return layers
