"""The console mixer's master stage as fxmix JSFX: slider values for a DAW's master track, and the chain's
processing in Python.

A filled master plan (:func:`fxmix.dsp.stages.master.master`, ``decisions.json``'s ``master``) becomes three
shipped JSFX (:data:`fxmix.plugin_presets.rfxchain.JSFX`): the stereo-linked compressor (the glue compressor:
threshold, :data:`~fxmix.dsp.stages.master.MASTER_COMP` ratio, attack, release), the utility (the gain to the
loudness target) and the look-ahead limiter (the -1 dBTP ceiling).

:func:`limit` is the limiter JSFX's processing in Python (``fxmix_limiter.jsfx``, delay-compensated as REAPER
plays it): fxmix's own limiter (:func:`fxmix.dsp.stages.loudness.peak_limit`) decided in one pass. The offline
limiter also re-measures the places it limited and limits them again, interpolates from a quarter of the
ceiling (the JSFX from half) and mirrors the signal past its edges; the tests hold the two within
:data:`LIMITER_TOLERANCE_DB` (waveform error relative to the output) on master-stage inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from ..dsp.errors import ConfigError
from ..dsp.stages.loudness import _TP_TAPS, LOOKAHEAD_MS, true_peaks
from ..dsp.stages.master import compress_linked

#: the limiter JSFX against fxmix's offline limiter: largest waveform error, dB under the signal (tests)
LIMITER_TOLERANCE_DB = -100.0
#: the compressor JSFX passes the signal through unless its threshold is under 0 dB: a glue threshold at or
#: above this is moved down by the compressor's input gain, and the utility gives the level back
_COMP_TOP_DB = -1.0


def _plan_value(plan: Mapping, key: str) -> float:
    v = plan.get(key)
    if v is None or not np.isfinite(float(v)):
        raise ConfigError(f"master plan: {key!r} is {v!r}; give a filled plan (decisions.json 'master')")
    return float(v)


def master_sliders(plan: Mapping) -> dict[str, list[float]]:
    """Slider values of the master chain (compressor > utility > limiter) for a filled master plan.

    The compressor is scale-invariant, so a glue threshold the JSFX cannot take (>= 0 dB, the sum of the
    tracks peaking over full scale) is shifted down by its input gain and the utility adds the shift back.

    Raises:
        ConfigError: the plan is not filled (no threshold or gain).
    """
    threshold = _plan_value(plan, "glue_threshold_db")
    gain = _plan_value(plan, "gain_db")
    shift = max(0.0, threshold - _COMP_TOP_DB)
    return {
        "comp": [-shift if shift else 0.0, threshold - shift, _plan_value(plan, "ratio"), _plan_value(plan, "attack_ms"),
                 _plan_value(plan, "release_ms")],
        "utility": [0.0, 0.0, gain + shift, 0.0, -2.0, 100.0],
        "limiter": [_plan_value(plan, "ceiling_dbtp"), LOOKAHEAD_MS],
    }


def latency_samples(sample_rate: int, lookahead_ms: float = LOOKAHEAD_MS) -> int:
    """The limiter JSFX's latency (its interpolator's half-length + L + L/2), reported to REAPER."""
    n = max(1, int(lookahead_ms * 1e-3 * sample_rate))
    return _TP_TAPS + n + n // 2


def limit(x: np.ndarray, sample_rate: int, ceiling_db: float, lookahead_ms: float = LOOKAHEAD_MS) -> np.ndarray:
    """The limiter JSFX on ``x`` (2, n), its latency compensated: silence before and after the signal, the
    detector max |x| and, where a sample or the next reaches half the ceiling, the 4x-oversampled points
    (:func:`fxmix.dsp.stages.loudness.true_peaks`' interpolator); required gain min(1, ceiling / detector);
    gain = moving average (L + 1) of the running minimum (2L + 1) of it, at most the required gain."""
    x = np.asarray(x, np.float32)
    n, lookahead = x.shape[-1], max(1, int(lookahead_ms * 1e-3 * sample_rate))
    pad = 2 * _TP_TAPS + 2 * lookahead
    padded = np.pad(x, ((0, 0), (pad, pad)))
    ceiling = np.float32(10 ** (ceiling_db / 20))
    pos, val = true_peaks(padded, float(ceiling))
    required = np.ones(padded.shape[-1], np.float64)
    over = val > ceiling
    required[pos[over]] = float(ceiling) / val[over].astype(np.float64)
    m = minimum_filter1d(required, 2 * lookahead + 1, mode="constant", cval=1.0)
    g = np.minimum(uniform_filter1d(m, lookahead + 1, mode="constant", cval=1.0), required)
    return (x * g[pad : pad + n].astype(np.float32)).astype(np.float32)


def process(x: np.ndarray, plan: Mapping, sample_rate: int) -> np.ndarray:
    """The master chain's JSFX on ``x`` (2, n): linked compressor, gain, limiter (:func:`limit`)."""
    s = master_sliders(plan)
    comp, gain_db, ceiling = s["comp"], s["utility"][2], s["limiter"][0]
    y = np.asarray(x, np.float32) * np.float32(10 ** (comp[0] / 20))
    y = y * compress_linked(y, sample_rate, comp[1], comp[2], comp[3], comp[4])[None, :]
    return limit((y * np.float32(10 ** (gain_db / 20))).astype(np.float32), sample_rate, ceiling)
