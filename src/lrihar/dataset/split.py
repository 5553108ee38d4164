"""Seeded, stratified train / val / test split by *source*, so near-duplicate frames of one video
never land in two splits.

A group is a video (or stream) source; each still image of an image folder is its own group
(stills are independent). Groups are placed largest first, each into the split that is furthest
below its target share, measured class by class, so every class is spread as evenly as whole
groups allow. The same input and seed always give the same split.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from lrihar.errors import BadInputError

SPLITS = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise BadInputError(f"--split: give three shares for train, val and test that add up to 1, "
                            f"not {list(fractions)}")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def split_groups(groups: Mapping[str, Counter], fractions: Sequence[float] = (0.7, 0.2, 0.1),
                 seed: int = 0) -> dict[str, str]:
    """Assign each group (name -> class counts) to train, val or test."""
    fractions = check_fractions(fractions)
    names = sorted(groups)
    random.Random(seed).shuffle(names)  # seeded order among groups of equal size
    names.sort(key=lambda g: -sum(groups[g].values()))
    totals: Counter = Counter()
    for counts in groups.values():
        totals.update(counts)
    filled = {s: Counter() for s in SPLITS}
    out = {}
    for g in names:
        def shortfall(split: str, g: str = g) -> float:
            target = fractions[SPLITS.index(split)]
            if target == 0:
                return float("-inf")
            # how far below target this split is, summed over the classes this group holds
            return sum(target * totals[c] - filled[split][c] for c in groups[g]) / target
        best = max(SPLITS, key=shortfall)
        out[g] = best
        filled[best].update(groups[g])
    return out
