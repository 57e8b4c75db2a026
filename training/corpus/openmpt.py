"""Tracker modules (.mod/.xm/.s3m/.it) rendered one instrument at a time with libopenmpt through ctypes.

Needs Debian's ``libopenmpt0`` (no PyPI package binds it). libopenmpt's "interactive" extension mutes
instruments (or, in formats without instruments, samples); rendering the song once per unit with every other
unit muted gives one solo per instrument, and because the module mixer is linear the solos sum to the full
render (tested). Each render uses a fresh module instance, seeked to the excerpt start, so mute state and
playback position always start clean.
"""

from __future__ import annotations

import ctypes as C
import ctypes.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from fxmix.dsp.constants import SAMPLE_RATE

_INSTALL = "apt-get install -y --no-install-recommends libopenmpt0"
_VP = C.c_void_p
_F = C.CFUNCTYPE
#: Note numbers in libopenmpt pattern data: 1..120 are notes (C-0 = 1), higher values are note-off/cut/fade.
_LAST_NOTE = 120


class OpenMPTMissing(RuntimeError):
    """libopenmpt is not installed; the message gives the apt-get line."""


class _Interactive(C.Structure):
    """openmpt_module_ext_interface_interactive, field order from libopenmpt_ext.h."""

    _fields_ = [
        ("set_current_speed", _F(C.c_int, _VP, C.c_int32)),
        ("set_current_tempo", _F(C.c_int, _VP, C.c_int32)),
        ("set_tempo_factor", _F(C.c_int, _VP, C.c_double)),
        ("get_tempo_factor", _F(C.c_double, _VP)),
        ("set_pitch_factor", _F(C.c_int, _VP, C.c_double)),
        ("get_pitch_factor", _F(C.c_double, _VP)),
        ("set_global_volume", _F(C.c_int, _VP, C.c_double)),
        ("get_global_volume", _F(C.c_double, _VP)),
        ("set_channel_volume", _F(C.c_int, _VP, C.c_int32, C.c_double)),
        ("get_channel_volume", _F(C.c_double, _VP, C.c_int32)),
        ("set_channel_mute_status", _F(C.c_int, _VP, C.c_int32, C.c_int)),
        ("get_channel_mute_status", _F(C.c_int, _VP, C.c_int32)),
        ("set_instrument_mute_status", _F(C.c_int, _VP, C.c_int32, C.c_int)),
        ("get_instrument_mute_status", _F(C.c_int, _VP, C.c_int32)),
        ("play_note", _F(C.c_int32, _VP, C.c_int32, C.c_int32, C.c_double, C.c_double)),
        ("stop_note", _F(C.c_int, _VP, C.c_int32)),
    ]


@lru_cache(maxsize=1)
def _lib() -> C.CDLL:
    name = ctypes.util.find_library("openmpt") or "libopenmpt.so.0"
    try:
        lib = C.CDLL(name)
    except OSError as exc:
        raise OpenMPTMissing(f"libopenmpt not found ({exc}); install it: {_INSTALL}") from exc
    i32, cd = C.c_int32, C.c_double
    sigs = {
        "openmpt_module_ext_create_from_memory": (
            _VP, [_VP, C.c_size_t, _VP, _VP, _VP, _VP, C.POINTER(C.c_int), C.POINTER(C.c_char_p), _VP]
        ),
        "openmpt_module_ext_get_module": (_VP, [_VP]),
        "openmpt_module_ext_get_interface": (C.c_int, [_VP, C.c_char_p, _VP, C.c_size_t]),
        "openmpt_module_ext_destroy": (None, [_VP]),
        "openmpt_module_get_num_channels": (i32, [_VP]),
        "openmpt_module_get_num_instruments": (i32, [_VP]),
        "openmpt_module_get_num_samples": (i32, [_VP]),
        "openmpt_module_get_num_orders": (i32, [_VP]),
        "openmpt_module_get_instrument_name": (_VP, [_VP, i32]),
        "openmpt_module_get_sample_name": (_VP, [_VP, i32]),
        "openmpt_module_get_metadata": (_VP, [_VP, C.c_char_p]),
        "openmpt_free_string": (None, [_VP]),
        "openmpt_module_get_duration_seconds": (cd, [_VP]),
        "openmpt_module_set_repeat_count": (C.c_int, [_VP, i32]),
        "openmpt_module_ctl_set_boolean": (C.c_int, [_VP, C.c_char_p, C.c_int]),
        "openmpt_module_set_position_seconds": (cd, [_VP, cd]),
        "openmpt_module_read_interleaved_float_stereo": (C.c_size_t, [_VP, i32, C.c_size_t, _VP]),
        "openmpt_module_get_order_pattern": (i32, [_VP, i32]),
        "openmpt_module_get_pattern_num_rows": (i32, [_VP, i32]),
        "openmpt_module_get_pattern_row_channel_command": (C.c_uint8, [_VP, i32, i32, i32, C.c_int]),
    }
    for fn, (res, args) in sigs.items():
        getattr(lib, fn).restype = res
        getattr(lib, fn).argtypes = args
    return lib


def openmpt_available() -> bool:
    try:
        _lib()
    except OpenMPTMissing:
        return False
    return True


def _string(p: int | None) -> str:
    if not p:
        return ""
    text = C.cast(p, C.c_char_p).value or b""
    _lib().openmpt_free_string(p)
    return text.decode("latin-1").strip()


@dataclass(frozen=True)
class UnitNotes:
    """Pattern-data statistics of one instrument/sample: how many notes, which pitches (1..120)."""

    count: int
    pitches: tuple[int, ...]


class _Instance:
    """One libopenmpt module instance (ext API)."""

    def __init__(self, data: bytes, path: Path):
        lib = _lib()
        self._buf = C.create_string_buffer(data, len(data))
        err = C.c_int(0)
        msg = C.c_char_p()
        self.ext = lib.openmpt_module_ext_create_from_memory(
            self._buf, len(data), None, None, None, None, C.byref(err), C.byref(msg), None
        )
        if not self.ext:
            raise ValueError(f"{path}: libopenmpt could not read this module (error {err.value})")
        self.mod = lib.openmpt_module_ext_get_module(self.ext)
        self.ia = _Interactive()
        if not lib.openmpt_module_ext_get_interface(self.ext, b"interactive", C.byref(self.ia), C.sizeof(self.ia)):
            raise RuntimeError("libopenmpt has no interactive interface; install libopenmpt0 >= 0.3")
        lib.openmpt_module_set_repeat_count(self.mod, 0)
        # a seek also restores the notes that are still sounding there (a held pad or bass would otherwise be
        # silent until its next note)
        lib.openmpt_module_ctl_set_boolean(self.mod, b"seek.sync_samples", 1)

    def close(self) -> None:
        if self.ext:
            _lib().openmpt_module_ext_destroy(self.ext)
            self.ext = None


class TrackerModule:
    """A module file: its units (instruments or samples), pattern statistics and per-unit renders."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._data = self.path.read_bytes()
        lib = _lib()
        inst = _Instance(self._data, self.path)
        try:
            m = inst.mod
            n_inst = lib.openmpt_module_get_num_instruments(m)
            self.unit_kind = "instrument" if n_inst else "sample"
            if n_inst:
                self.unit_names = [_string(lib.openmpt_module_get_instrument_name(m, i)) for i in range(n_inst)]
            else:
                n = lib.openmpt_module_get_num_samples(m)
                self.unit_names = [_string(lib.openmpt_module_get_sample_name(m, i)) for i in range(n)]
            self.duration_s = float(lib.openmpt_module_get_duration_seconds(m))
            self.n_channels = int(lib.openmpt_module_get_num_channels(m))
            self.format = _string(lib.openmpt_module_get_metadata(m, b"type"))
            self.title = _string(lib.openmpt_module_get_metadata(m, b"title"))
            self.unit_notes = self._note_stats(m)
        finally:
            inst.close()

    def _note_stats(self, m: int) -> dict[int, UnitNotes]:
        """Per unit (0-based): notes played over the order list, from the pattern data."""
        lib = _lib()
        found: dict[int, list[int]] = {}
        seen: set[int] = set()
        for o in range(lib.openmpt_module_get_num_orders(m)):
            p = lib.openmpt_module_get_order_pattern(m, o)
            if p < 0 or p in seen:
                continue
            seen.add(p)
            for r in range(lib.openmpt_module_get_pattern_num_rows(m, p)):
                for c in range(self.n_channels):
                    note = lib.openmpt_module_get_pattern_row_channel_command(m, p, r, c, 0)
                    unit = lib.openmpt_module_get_pattern_row_channel_command(m, p, r, c, 1)
                    if 1 <= note <= _LAST_NOTE and unit > 0:
                        found.setdefault(unit - 1, []).append(int(note))
        return {u: UnitNotes(len(v), tuple(sorted(set(v)))) for u, v in found.items()}

    def render(self, start_s: float, seconds: float, solo: int | None = None,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """``(2, n)`` float32 of ``[start_s, start_s + seconds)``; ``solo``: play only that unit (0-based).

        Past the song's end the output is zeros (the module is not looped).
        """
        lib = _lib()
        inst = _Instance(self._data, self.path)
        try:
            if solo is not None:
                for u in range(len(self.unit_names)):
                    inst.ia.set_instrument_mute_status(inst.ext, u, int(u != solo))
            if start_s > 0:
                lib.openmpt_module_set_position_seconds(inst.mod, float(start_s))
            n = int(round(seconds * sample_rate))
            buf = np.zeros(2 * n, np.float32)
            got = 0
            while got < n:
                k = lib.openmpt_module_read_interleaved_float_stereo(
                    inst.mod, sample_rate, min(8192, n - got), buf.ctypes.data + 8 * got
                )
                if k == 0:
                    break
                got += int(k)
            return np.ascontiguousarray(buf.reshape(-1, 2).T)
        finally:
            inst.close()
