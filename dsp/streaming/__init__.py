"""Streaming effect normalization: running statistics and the block-wise normalizer (the real-time twin of
``chain``).

Modules:

* :mod:`.constants`: time constants, hop and update schedule, rate limits, filter sizes (one place).
* :mod:`.meters`: running loudness, spectrum/φ and onset dynamics (:class:`RunningStats`).
* :mod:`.conv`: minimum-phase filter spectra and the partitioned convolution of the EQ/pan FIRs.
* :mod:`.planner`: the planning job (``chain.normalize_stem``'s decisions on running statistics) and the
  rate limiter.
* :mod:`.windows`: the analysis windows a compressor plan reads, in shared memory for a planner process.
* :mod:`.normalizer`: :class:`StreamingNormalizer`.
* :mod:`.planner_process`: the separate planner process of realtime sessions (not imported here: it is
  started as ``python -m fxmix.dsp.streaming.planner_process``).

streaming-safe: yes (:class:`StreamingNormalizer`, all ``Running*`` classes).
"""

from .constants import (
    COLOR_SMOOTHING,
    COMP_FADE_S,
    COMP_PLAN_EVERY,
    COMP_STEP_DB,
    COMP_WINDOW_S,
    DYNAMICS_WINDOW_S,
    FILTER_DEADBAND_DB,
    FILTER_TAPS,
    HOP_SAMPLES,
    LIMITER_THRESHOLD_DB,
    MAX_STEP_DB,
    PLAN_HOPS,
    TAU_S,
    UPDATE_HOPS,
)
from .conv import minimum_phase_spectra
from .meters import RunningDynamics, RunningLoudness, RunningSpectrum, RunningStats
from .normalizer import StreamingNormalizer

__all__ = [
    "COLOR_SMOOTHING",
    "COMP_FADE_S",
    "COMP_PLAN_EVERY",
    "COMP_STEP_DB",
    "COMP_WINDOW_S",
    "DYNAMICS_WINDOW_S",
    "FILTER_DEADBAND_DB",
    "FILTER_TAPS",
    "HOP_SAMPLES",
    "LIMITER_THRESHOLD_DB",
    "MAX_STEP_DB",
    "PLAN_HOPS",
    "TAU_S",
    "UPDATE_HOPS",
    "RunningDynamics",
    "RunningLoudness",
    "RunningSpectrum",
    "RunningStats",
    "StreamingNormalizer",
    "minimum_phase_spectra",
]
