"""Master bus: stereo-linked glue compressor -> gain to a loudness target -> look-ahead true-peak limiter.

The engineer of the training corpus masters every mixture with this stage (its loudness target and glue gain
reduction drawn per song around :data:`MASTER_LUFS` and :data:`MASTER_GLUE_GR_DB`); the console mixer's mix
goes through it with those means, so a console mix arrives at the loudness and crest factor of the mixes it
learnt from instead of the -27 LUFS of a sum of class-normalized tracks.

A plan is a dict: ``target_lufs`` and ``glue_gr_db`` in; :func:`master` fills ``glue_threshold_db`` (the
threshold that takes ``glue_gr_db`` off the sample peak of the input) and ``gain_db`` (iterated until the
limited output is within 0.1 LU of the target), so rendering the filled plan again replays exactly.
"""

from __future__ import annotations

import math

import numpy as np
from pedalboard import Compressor

from ..audio import db_to_gain
from ..constants import TRUE_PEAK_CEILING_DB
from ..features import integrated_loudness, linked_envelope
from .compression import linked_gain
from .loudness import peak_limit

#: Glue compressor of the master: ratio, attack (ms), release (ms).
MASTER_COMP = (2.0, 25.0, 250.0)
#: Default master loudness target (LUFS) and glue gain reduction at the input's peak (dB): the corpus
#: engineer's means.
MASTER_LUFS = -11.5
MASTER_GLUE_GR_DB = 2.0


def default_plan() -> dict:
    """The mean master: :data:`MASTER_LUFS`, :data:`MASTER_GLUE_GR_DB` (threshold and gain decided at render)."""
    return {"target_lufs": MASTER_LUFS, "glue_gr_db": MASTER_GLUE_GR_DB}


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def compress_linked(
    x: np.ndarray,
    sr: int,
    threshold_db: float,
    ratio: float,
    attack_ms: float,
    release_ms: float,
    key: np.ndarray | None = None,
) -> np.ndarray:
    """Stereo-linked pedalboard Compressor gain from ``key`` (default ``x``) -> (n,) gain."""
    comp = Compressor(threshold_db=threshold_db, ratio=ratio, attack_ms=attack_ms, release_ms=release_ms)
    return linked_gain(linked_envelope(_f32(x if key is None else key)), sr, comp)


def master(prebus: np.ndarray, m: dict, sr: int) -> np.ndarray:
    """Glue compressor -> gain -> true-peak limiter on ``prebus`` (2, n); fills ``m``'s threshold, gain,
    compressor settings and measured loudness (see the module docstring). A silent input comes back as is."""
    ratio, attack, release = MASTER_COMP
    if m.get("glue_threshold_db") is None:
        pk = 20 * math.log10(max(float(np.max(np.abs(prebus))), 1e-9))
        m["glue_threshold_db"] = round(pk - m["glue_gr_db"] * ratio / (ratio - 1.0), 3)
    x = _f32(prebus * compress_linked(prebus, sr, m["glue_threshold_db"], ratio, attack, release)[None, :])
    replay = m.get("gain_db") is not None
    gain = m["gain_db"] if replay else m["target_lufs"] - integrated_loudness(x, sr)
    if not math.isfinite(gain):
        gain = 0.0
    passes = 1 if replay else 3
    for k in range(passes):
        gain = round(float(gain), 4)  # the recorded value, so a replay applies exactly this gain
        y = peak_limit(_f32(x * np.float32(db_to_gain(gain))), sr, TRUE_PEAK_CEILING_DB)
        lufs = integrated_loudness(y, sr)
        if k == passes - 1 or not math.isfinite(lufs) or abs(lufs - m["target_lufs"]) < 0.1:
            break
        gain += m["target_lufs"] - lufs
    m.update(
        gain_db=round(float(gain), 4),
        ratio=ratio,
        attack_ms=attack,
        release_ms=release,
        ceiling_dbtp=TRUE_PEAK_CEILING_DB,
        lufs=round(float(integrated_loudness(y, sr)), 3),
    )
    return y
