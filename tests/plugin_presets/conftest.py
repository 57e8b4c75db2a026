"""Shared checks of the plugin_presets tests."""

from __future__ import annotations

import numpy as np
import pytest
from fxmix.plugin_presets.peq import (
    DUPLICATE_FRACTION,
    FILTER_GAIN_LIMIT_DB,
    OUTPUT_GAIN_LIMIT_DB,
    PEAK_Q_RANGE,
    SHELF_Q_RANGE,
    ParametricEq,
    peak_bandwidth_octaves,
)


def _assert_usable(fit: ParametricEq, where: str) -> None:
    """The limits a person editing the EQ expects; no two peaks fighting (opposite gains, centres nearer than
    the mean of their half-bandwidths) or duplicating each other (same sign, nearer than half that)."""
    assert abs(fit.gain_db) <= OUTPUT_GAIN_LIMIT_DB + 1e-9, where
    for f in fit.filters:
        if f.kind == "highpass":
            continue
        assert abs(f.gain_db) <= FILTER_GAIN_LIMIT_DB + 1e-9, (where, f)
        lo, hi = PEAK_Q_RANGE if f.kind == "peak" else SHELF_Q_RANGE
        assert lo - 1e-9 <= f.q <= hi + 1e-9, (where, f)
    peaks = [f for f in fit.filters if f.kind == "peak"]
    for i, p in enumerate(peaks):
        for r in peaks[i + 1 :]:
            dist = abs(np.log2(p.cutoff_frequency_hz / r.cutoff_frequency_hz))
            half_bw = 0.25 * (peak_bandwidth_octaves(p.q) + peak_bandwidth_octaves(r.q))
            if p.gain_db * r.gain_db < 0:
                assert dist >= half_bw, (where, "fighting", p, r)
            else:
                assert dist >= DUPLICATE_FRACTION * half_bw, (where, "duplicates", p, r)


@pytest.fixture
def assert_usable():
    """:func:`_assert_usable`: a fitted parametric EQ is within the hand-editing limits."""
    return _assert_usable
