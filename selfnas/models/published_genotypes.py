"""Published cells as named selfnas genotypes: ``PUBLISHED_GENOTYPES.get("DARTS_V2")``.

The op lists are the DARTS paper's (Liu et al., ICLR 2019), as its code publishes them in
``cnn/genotypes.py`` of quark0/darts: V1 was found by first-order, V2 by second-order search;
V2 is the cell of the paper's CIFAR-10 result (2.76% error, 3.3M parameters at C=36, 20 cells).
"""

from __future__ import annotations

from selfnas.models.cell_genotype import CellGenotype
from selfnas.registry import Registry

DARTS_V1 = CellGenotype(
    normal=(
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2),
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
        ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0),
    ),
)  # fmt: skip

DARTS_V2 = CellGenotype(
    normal=(
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
    ),
)  # fmt: skip

#: published genotypes by name (the names their code uses)
PUBLISHED_GENOTYPES: Registry[CellGenotype] = Registry("published genotype")
PUBLISHED_GENOTYPES.add("DARTS_V1", DARTS_V1, "DARTS cells, first-order search (ICLR 2019)")
PUBLISHED_GENOTYPES.add("DARTS_V2", DARTS_V2, "DARTS cells, second-order search (ICLR 2019): 3.3M params")
