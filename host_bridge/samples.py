"""The bound on input sample values shared by the engine (``Session.process``) and the OSC bridge.

A finite sample far beyond full scale (a host's uninitialised buffer, 3e38) would overflow float32 in the class
bus sums and the normalizer's filters and leave the mix non-finite; such samples are clipped to the bound and
counted instead of rejecting the block. NaN/inf are a different fault: the engine refuses them, the bridge zeroes
the track's block (both say so).
"""

from __future__ import annotations

import numpy as np

#: A finite sample beyond this magnitude (+60 dBFS) is clipped to it.
MAX_SAMPLE = 1000.0


def within_bound(x: np.ndarray) -> bool:
    """True when every sample is finite and within ±:data:`MAX_SAMPLE` (one pass each for max and min, no
    temporary array; NaN compares False, so it fails too)."""
    return bool(x.max() <= MAX_SAMPLE and x.min() >= -MAX_SAMPLE) if x.size else True


def clip_huge(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``(x clipped to ±MAX_SAMPLE, number of samples that were beyond it)``; ``x`` itself when none was.
    The caller has checked that ``x`` is finite."""
    if within_bound(x):
        return x, 0
    over = int(np.count_nonzero(np.abs(x) > MAX_SAMPLE))
    return np.clip(x, -MAX_SAMPLE, MAX_SAMPLE), over
