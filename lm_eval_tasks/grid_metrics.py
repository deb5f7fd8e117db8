"""The per-cell metric that the grid tasks (``longllada_niah``, ``longllada_ruler``) share.

Every document reports every cell of its task's grid: its score in its own cell and None in the others, so that
every process of a data-parallel run holds the same metric names, which lm-eval's gathering needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_of_scored(items: Sequence[float | None]) -> float:
    """A cell's aggregation: the mean over the documents of that cell (the others report None); NaN when none
    of its documents was evaluated (``--limit`` shorter than the grid)."""
    scored = [x for x in items if x is not None]
    return sum(scored) / len(scored) if scored else math.nan
