"""Standard MIDI files to parts: one part per (MIDI track, channel, program), with the composer's mix.

A composer's General MIDI file carries mix decisions: channel volume (CC7) and pan (CC10) per channel, and
velocities per note. Velocities and expression (CC11) are performance and stay in the dry render; CC7 and
CC10 are taken out of the render and become the part's ``level_db`` (GM's recommended volume curve,
40·log10(CC7/127) dB) and ``pan`` ((CC10 - 64) / 63, clipped to [-1, 1]). Where a controller changes inside an
excerpt, the value in force for the longest time while the part plays is used.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path

import mido

from .notes import NoteEvent, Part

DRUM_MIDI_CHANNEL = 9
#: GM defaults when a file never sets the controller.
DEFAULT_CC7 = 100
DEFAULT_CC10 = 64
_REPLAYED_CCS = (1, 11, 64)  # modulation, expression, sustain pedal


@dataclass
class MidiTrack:
    """All notes of one (track, channel, program) of a MIDI file, with its controller history."""

    key: str
    channel: int
    program: int
    name: str
    notes: list[NoteEvent] = field(default_factory=list)
    ccs: list[tuple[float, int, int]] = field(default_factory=list)
    volume: list[tuple[float, int]] = field(default_factory=list)
    pan: list[tuple[float, int]] = field(default_factory=list)

    @property
    def drum(self) -> bool:
        return self.channel == DRUM_MIDI_CHANNEL


def read_midi(path: str | Path) -> tuple[list[MidiTrack], float, float]:
    """Parse a MIDI file into tracks. Returns (tracks, duration s, first tempo in BPM).

    Raises:
        ValueError: the file is not a readable MIDI file (names the file).
    """
    path = Path(path)
    try:
        mid = mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable MIDI file ({exc})") from exc
    timed, tempo_bpm, length_s = _timed_tracks(mid)
    out: dict[str, MidiTrack] = {}
    for t_index, events in enumerate(timed):
        program = [0] * 16
        volume: dict[int, list[tuple[float, int]]] = {}
        pans: dict[int, list[tuple[float, int]]] = {}
        ccs: dict[int, list[tuple[float, int, int]]] = {}
        track_name = ""
        open_notes: dict[tuple[int, int], tuple[float, int, str]] = {}
        for t, msg in events:
            if msg.type == "track_name":
                track_name = msg.name.strip()
            elif msg.type == "program_change":
                program[msg.channel] = msg.program
            elif msg.type == "control_change":
                if msg.control == 7:
                    volume.setdefault(msg.channel, []).append((t, msg.value))
                elif msg.control == 10:
                    pans.setdefault(msg.channel, []).append((t, msg.value))
                elif msg.control in _REPLAYED_CCS:
                    ccs.setdefault(msg.channel, []).append((t, msg.control, msg.value))
            elif msg.type == "note_on" and msg.velocity > 0:
                key = f"{t_index}:{msg.channel}:{program[msg.channel]}"
                open_notes[(msg.channel, msg.note)] = (t, msg.velocity, key)
            elif msg.type in ("note_off", "note_on"):
                started = open_notes.pop((msg.channel, msg.note), None)
                if started is None:
                    continue
                t0, vel, key = started
                tr = out.get(key)
                if tr is None:
                    ch = msg.channel
                    tr = out[key] = MidiTrack(key, ch, program[ch], track_name)
                tr.notes.append(NoteEvent(t0, max(t - t0, 0.01), msg.note, vel))
        for tr in out.values():
            if tr.key.startswith(f"{t_index}:"):
                tr.volume = volume.get(tr.channel, [])
                tr.pan = pans.get(tr.channel, [])
                tr.ccs = ccs.get(tr.channel, [])
    # controllers may sit on another MIDI track than the notes (format 1): fill in by channel
    vol_by_channel = {t.channel: t.volume for t in out.values() if t.volume}
    pan_by_channel = {t.channel: t.pan for t in out.values() if t.pan}
    for tr in out.values():
        tr.volume = tr.volume or vol_by_channel.get(tr.channel, [])
        tr.pan = tr.pan or pan_by_channel.get(tr.channel, [])
    tracks = sorted((t for t in out.values() if t.notes), key=lambda t: t.key)
    return tracks, length_s, tempo_bpm


def _timed_tracks(mid: mido.MidiFile) -> tuple[list[list[tuple[float, mido.Message]]], float, float]:
    """Every track's messages with absolute times in seconds (the file's tempo map applied to all tracks),
    the first tempo (BPM) and the length (s)."""
    tempo_map: list[tuple[int, int]] = [(0, 500000)]
    last_tick = 0
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo_map.append((tick, msg.tempo))
        last_tick = max(last_tick, tick)
    tempo_map = sorted(dict(tempo_map).items())
    tempo_map.sort()
    tpb = mid.ticks_per_beat
    ticks = [t for t, _ in tempo_map]
    starts = [0.0]  # seconds at each tempo change
    for (t0, tempo), (t1, _) in zip(tempo_map, tempo_map[1:]):
        starts.append(starts[-1] + (t1 - t0) * tempo / (1e6 * tpb))

    def seconds(at: int) -> float:
        k = bisect.bisect_right(ticks, at) - 1
        return starts[k] + (at - ticks[k]) * tempo_map[k][1] / (1e6 * tpb)

    out = []
    for track in mid.tracks:
        tick, events = 0, []
        for msg in track:
            tick += msg.time
            events.append((seconds(tick), msg))
        out.append(events)
    return out, float(mido.tempo2bpm(tempo_map[0][1])), seconds(last_tick)


def _in_force(changes: list[tuple[float, int]], start_s: float, end_s: float, default: int) -> int:
    """The controller value that holds longest within [start_s, end_s)."""
    held: dict[int, float] = {}
    value, t_prev = default, start_s
    for t, v in sorted(changes):
        if t <= start_s:
            value = v
            continue
        if t >= end_s:
            break
        held[value] = held.get(value, 0.0) + (t - t_prev)
        value, t_prev = v, t
    held[value] = held.get(value, 0.0) + (end_s - t_prev)
    return max(held.items(), key=lambda kv: (kv[1], kv[0]))[0]


def composer_mix(track: MidiTrack, start_s: float, end_s: float) -> tuple[float, float]:
    """(level dB, pan in [-1, 1]) the composer set for ``track`` over an excerpt."""
    cc7 = _in_force(track.volume, start_s, end_s, DEFAULT_CC7)
    cc10 = _in_force(track.pan, start_s, end_s, DEFAULT_CC10)
    level_db = 40.0 * math.log10(max(cc7, 1) / 127.0)
    pan = max(-1.0, min(1.0, (cc10 - 64) / 63.0))
    return round(level_db, 3), round(pan, 4)


def to_part(track: MidiTrack, cls: str, instrument: str, role: str, source: str, licence: str) -> Part:
    """A part for the renderer (controllers CC7/CC10 excluded from the render, see the module docstring)."""
    return Part(f"{track.key}", cls, instrument, list(track.notes), track.program, track.drum, role,
                list(track.ccs), None, None, source, licence)
