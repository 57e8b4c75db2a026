"""Dry SoundFont rendering through libfluidsynth (Debian ``libfluidsynth3``) with ctypes.

One synth per SoundFont and process: the SoundFont is loaded once (FluidR3_GM is 142 MB) and every track is
rendered by scheduling its note events sample-accurately between ``fluid_synth_write_float`` calls, so no MIDI
file, sequencer or timer is involved and renders are bit-identical run to run. Reverb and chorus are off
(dry); CC7 volume and CC10 pan stay at their defaults (the engineer sets level and pan). pyfluidsynth's render
is not used: it peak-normalizes every render and loses the level.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from fxmix.dsp.constants import SAMPLE_RATE

from .notes import Part

DRUM_CHANNEL = 9
_MELODIC_CHANNEL = 0
#: Synth master gain: FluidR3 voices peak near -20 dBFS per note at 0.5, headroom for chords and kits.
SYNTH_GAIN = 0.5
_INSTALL = "apt-get install -y --no-install-recommends libfluidsynth3"


class FluidSynthMissing(RuntimeError):
    """libfluidsynth is not installed; the message gives the apt-get line."""


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise FluidSynthMissing(f"libfluidsynth not found ({exc}); install it: {_INSTALL}") from exc
    vp, ci, cd, cc = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p
    sigs = {
        "new_fluid_settings": (vp, []),
        "delete_fluid_settings": (None, [vp]),
        "fluid_settings_setnum": (ci, [vp, cc, cd]),
        "fluid_settings_setint": (ci, [vp, cc, ci]),
        "new_fluid_synth": (vp, [vp]),
        "delete_fluid_synth": (None, [vp]),
        "fluid_synth_sfload": (ci, [vp, cc, ci]),
        "fluid_synth_program_select": (ci, [vp, ci, ci, ci, ci]),
        "fluid_synth_noteon": (ci, [vp, ci, ci, ci]),
        "fluid_synth_noteoff": (ci, [vp, ci, ci]),
        "fluid_synth_cc": (ci, [vp, ci, ci, ci]),
        "fluid_synth_system_reset": (ci, [vp]),
        "fluid_synth_write_float": (ci, [vp, ci, vp, ci, ci, vp, ci, ci]),
        "fluid_set_log_function": (vp, [ci, vp, vp]),
        "fluid_synth_get_sfont_by_id": (vp, [vp, ci]),
        "fluid_synth_add_sfont": (ci, [vp, vp]),
        "fluid_synth_remove_sfont": (ci, [vp, vp]),
    }
    for fn, (res, args) in sigs.items():
        getattr(lib, fn).restype = res
        getattr(lib, fn).argtypes = args
    for level in range(5):  # silence fluidsynth's console logging (it warns about unused presets)
        lib.fluid_set_log_function(level, None, None)
    return lib


def fluidsynth_available() -> bool:
    try:
        _lib()
    except FluidSynthMissing:
        return False
    return True


class SoundFontSynth:
    """A libfluidsynth instance holding one SoundFont, rendering parts one at a time."""

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: SoundFont not found; install its Debian package")
        lib = _lib()
        self._settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(self._settings, b"synth.sample-rate", float(sample_rate))
        lib.fluid_settings_setnum(self._settings, b"synth.gain", SYNTH_GAIN)
        lib.fluid_settings_setint(self._settings, b"synth.reverb.active", 0)
        lib.fluid_settings_setint(self._settings, b"synth.chorus.active", 0)
        lib.fluid_settings_setint(self._settings, b"synth.polyphony", 256)
        lib.fluid_settings_setint(self._settings, b"synth.cpu-cores", 1)
        self._loader = lib.new_fluid_synth(self._settings)
        sfid = lib.fluid_synth_sfload(self._loader, str(self.path).encode(), 1)
        if sfid < 0:
            raise RuntimeError(f"{self.path}: libfluidsynth could not load this SoundFont")
        self._sfont = lib.fluid_synth_get_sfont_by_id(self._loader, sfid)
        self.sample_rate = sample_rate

    def render(self, part: Part, n: int, drum_kit_on_melodic: bool = False) -> np.ndarray:
        """Render one part to ``(2, n)`` float32.

        Args:
            part: notes (seconds), GM program, drum flag and performance controllers.
            n: output length in samples; later events are dropped, notes still sounding are cut.
            drum_kit_on_melodic: the SoundFont is a drum kit at bank 0 / preset 0 (the AVL kits): play the
                drum part on a melodic channel, where that preset lives.
        """
        lib = _lib()
        # a fresh synth per track (sharing the loaded SoundFont): no voice, block or LFO state carries over,
        # so a track renders the same whatever was rendered before it
        s = self._synth = lib.new_fluid_synth(self._settings)
        sfid = lib.fluid_synth_add_sfont(s, self._sfont)
        try:
            return self._render(part, n, drum_kit_on_melodic, s, sfid)
        finally:
            lib.fluid_synth_remove_sfont(s, self._sfont)
            lib.delete_fluid_synth(s)
            self._synth = None

    def _render(self, part: Part, n: int, drum_kit_on_melodic: bool, s: int, sfid: int) -> np.ndarray:
        lib = _lib()
        if part.drum and not drum_kit_on_melodic:
            chan, bank, prog = DRUM_CHANNEL, 128, 0
        else:
            chan, bank, prog = _MELODIC_CHANNEL, 0, 0 if part.drum else int(part.program)
        if lib.fluid_synth_program_select(s, chan, sfid, bank, prog) != 0:
            lib.fluid_synth_program_select(s, chan, sfid, 0, 0)  # preset missing: fall back to 0
        sr = self.sample_rate
        events: list[tuple[int, int, int, int]] = []  # (sample, order, a, b); offs before ons at a tie
        for t, ctrl, val in part.ccs:
            events.append((max(int(round(t * sr)), 0), 0, 1000 + int(ctrl), int(val)))
        for note in part.notes:
            on = max(int(round(note.start_s * sr)), 0)
            off = max(int(round((note.start_s + note.dur_s) * sr)), on + 1)
            events.append((on, 2, int(note.pitch), int(np.clip(note.velocity, 1, 127))))
            if not part.drum:
                events.append((off, 1, int(note.pitch), 0))
        events.sort()
        left = np.zeros(n, np.float32)
        right = np.zeros(n, np.float32)
        pos = 0
        for at, kind, a, b in events:
            if at >= n:
                break
            if at > pos:
                self._write(left, right, pos, at)
                pos = at
            if kind == 0:
                lib.fluid_synth_cc(s, chan, a - 1000, b)
            elif kind == 1:
                lib.fluid_synth_noteoff(s, chan, a)
            else:
                lib.fluid_synth_noteon(s, chan, a, b)
        if pos < n:
            self._write(left, right, pos, n)
        return np.stack([left, right])

    def _write(self, left: np.ndarray, right: np.ndarray, start: int, stop: int) -> None:
        lib = _lib()
        step = 4096
        for k in range(start, stop, step):
            m = min(step, stop - k)
            lib.fluid_synth_write_float(
                self._synth, m, left.ctypes.data, k, 1, right.ctypes.data, k, 1
            )

    def close(self) -> None:
        if self._loader:
            _lib().delete_fluid_synth(self._loader)
            _lib().delete_fluid_settings(self._settings)
            self._loader = None


@lru_cache(maxsize=4)
def synth_for(path: str, sample_rate: int = SAMPLE_RATE) -> SoundFontSynth:
    """The per-process synth of one SoundFont (loaded once, reused for every track)."""
    return SoundFontSynth(path, sample_rate)
