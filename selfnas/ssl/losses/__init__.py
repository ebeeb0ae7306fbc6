"""One loss per file."""

from selfnas.ssl.losses.negative_cosine import negative_cosine_similarity
from selfnas.ssl.losses.ntxent import info_nce, nt_xent

__all__ = ["info_nce", "negative_cosine_similarity", "nt_xent"]
