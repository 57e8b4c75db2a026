"""Reverb augmentation (training only by default): parallel, band-limited send, seeded.

x + Reverb(LowShelf(HighShelf(x))) with -30 dB shelves at f_low ~ U[500, 700] Hz and f_high ~ U[7000, 10000] Hz
as in the reference (fxnorm-spec.md §1.3), with the probabilities no longer swapped (§8.2): ``p_reverb``
is the chance that the send is added at all, ``p_eq`` the chance that the send is band-limited. The reverb is
an impulse response drawn from an IR folder (``*.wav``/``*.flac``, convolved) or pedalboard's built-in
algorithmic reverb with a drawn room size.

streaming-safe: apply yes (pedalboard effects with reset=False); drawing is offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pedalboard

from ..audio import read_audio
from ..params import ReverbParams


def draw(
    rng: np.random.Generator,
    *,
    ir_dir: str | Path | None = None,
    p_reverb: float = 1.0,
    p_eq: float = 1.0,
) -> ReverbParams | None:
    """Draw reverb send parameters; ``None`` when the send is not applied (probability 1 - p_reverb)."""
    if rng.random() >= p_reverb:
        return None
    band_limit = rng.random() < p_eq
    ir_path = None
    if ir_dir is not None:
        irs = sorted(p for p in Path(ir_dir).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
        if irs:
            ir_path = str(irs[int(rng.integers(len(irs)))])
    return ReverbParams(
        low_shelf_hz=float(rng.uniform(500, 700)),
        high_shelf_hz=float(rng.uniform(7000, 10000)),
        shelf_gain_db=-30.0 if band_limit else 0.0,
        room_size=float(rng.uniform(0.6, 0.95)),
        damping=float(rng.uniform(0.2, 0.6)),
        wet_db=float(rng.uniform(-9.0, -3.0)),
        ir_path=ir_path,
    )


def apply(audio: np.ndarray, sample_rate: int, params: ReverbParams | None) -> np.ndarray:
    if params is None:
        return audio
    if params.ir_path:
        ir = read_audio(params.ir_path, sample_rate).audio
        verb = pedalboard.Convolution(ir.T.copy(), mix=1.0, sample_rate=sample_rate)
    else:
        verb = pedalboard.Reverb(
            room_size=params.room_size,
            damping=params.damping,
            wet_level=1.0,
            dry_level=0.0,
            width=params.width,
        )
    send = pedalboard.Pedalboard(
        [
            pedalboard.LowShelfFilter(cutoff_frequency_hz=params.low_shelf_hz, gain_db=params.shelf_gain_db),
            pedalboard.HighShelfFilter(
                cutoff_frequency_hz=params.high_shelf_hz, gain_db=params.shelf_gain_db
            ),
            verb,
            pedalboard.Gain(gain_db=params.wet_db),
        ]
    )
    return (audio + send.process(audio.astype(np.float32), sample_rate)).astype(np.float32)
