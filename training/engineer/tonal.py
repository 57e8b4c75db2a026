"""Class-bus tonal balance of the corpus engineer toward the reference's class targets (the long-term class
spectra of commercial mixes, MUSDB18 averages, ``musdb18-reference``): the harmonic exciter where a bus lacks
top end (:mod:`fxmix.model.console.exciter`), then the half-octave graphic EQ (:mod:`fxmix.model.console.geq`);
the console shares both.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...dsp.constants import REFERENCE_PROFILE, SAMPLE_RATE
from ...dsp.profile import load_profile
from ...model.console.exciter import exciter_mix_db as _exciter_mix_db
from ...model.console.geq import tonal_eq as _tonal_eq


@lru_cache(maxsize=1)
def tonal_targets() -> dict[str, np.ndarray]:
    prof = load_profile(REFERENCE_PROFILE)
    return {c: np.asarray(prof.targets_for(c).spectrum_db, float) for c in prof.classes}


def tonal_eq(measured_db: np.ndarray, cls: str, amount: float) -> list[dict]:
    """:func:`fxmix.model.console.geq.tonal_eq` toward the class's reference target."""
    return _tonal_eq(measured_db, tonal_targets()[cls], amount)


def exciter_mix_db(bus: np.ndarray, excited: np.ndarray, cls: str, sample_rate: int = SAMPLE_RATE) -> float | None:
    """:func:`fxmix.model.console.exciter.exciter_mix_db` toward the class's reference target."""
    return _exciter_mix_db(bus, excited, cls, tonal_targets()[cls], sample_rate)
