"""Listening-test fixtures: a saved-audio folder as `fxmix eval --save-audio` writes it, and decoding a page's
stimulus scripts back into audio."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
from fxmix.dsp.audio import read_audio
from fxmix.training.listening.stimuli import save_song_audio

from support import signals

SR = 44100
#: Odd method names, so a leak into the page cannot hide among ordinary words.
METHODS = ("zebramix", "quokkamix")


def make_saved_audio(root: Path, n_songs: int = 3, seconds: float = 3.0, spiky: bool = False) -> Path:
    """A saved-audio folder as `fxmix eval --save-audio` writes it: methods at very different levels."""
    for k in range(n_songs):
        stems = signals.song(seconds, seed=10 * k)
        plain = np.sum(list(stems.values()), axis=0)
        mixes = {
            "zebramix": 2.0 * stems["vocals"] + stems["drums"] + 0.5 * stems["bass"] + stems["other"],
            "quokkamix": 0.05 * plain,  # ~ -26 dB: loudness matching must bring it up
        }
        target = plain.copy()
        if spiky and k == 0:  # a crest factor that cannot reach the level under the true-peak ceiling
            target = 0.001 * plain
            target[:, SR // 2 :: SR // 4] = 0.9
        save_song_audio(root / f"song{k}", f"song{k}", target, mixes, stems, SR)
    return root


def stimulus_audio(js: Path, scratch: Path) -> np.ndarray:
    """Decode a page's stimulus script (base64 FLAC) back into audio."""
    b64 = re.search(r'= "([A-Za-z0-9+/=]+)";', js.read_text()).group(1)
    scratch.write_bytes(base64.b64decode(b64))
    return read_audio(scratch).audio
