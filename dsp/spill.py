"""Effect normalization of a song with memory bounded by one stem: buses read, normalized and kept on disk.

:func:`normalize_stems` holds every class bus and every normalized stem at once: four 20-minute stereo
stems are 1.7 GB of float32 before any work. Here each class bus is read (its files summed, resampled) and
written to a raw float32 file in a work folder; then each is read back, normalized by
:func:`fxmix.dsp.chain.normalize_stem` (planned on the whole stem, as the plan needs) into its own array,
and written over its raw file. Only one or two stems (``workers``) are in memory at a time, and
:class:`SpilledStems` serves blocks of the normalized stems to whatever streams them (the mixing network,
the mix file). The normalized stems are the same arrays :func:`normalize_stems` makes, sample for sample.

streaming-safe: no (whole-stem planning, one stem at a time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from . import constants as C
from .audio import peak_db, writing
from .chain import DEFAULT_STAGES, StemResult, near_silent_result, normalize_stem, silence_gate_db, stem_rngs
from .errors import AudioInputError
from .profile import Profile
from .stems import load_buses

#: Bytes of working memory reading or normalizing one stem takes, per byte of the stem (the stem, a copy
#: or array of work, bounded temporaries): reading a 20-minute stem took 2.9 over the process's base, and a
#: whole 20-minute mix peaked there too. Rounded up.
WORK_PER_STEM_BYTE = 3.0
#: Memory (bytes) the stems normalized at the same time may take; two workers only where both fit.
DEFAULT_BUDGET_BYTES = 1_000_000_000


@dataclass
class SpilledStems:
    """Normalized (or raw) stereo stems of ``n`` samples each, as raw float32 ``(2, n)`` files in ``folder``."""

    folder: Path
    names: list[str]
    n: int
    input_rate: int = C.SAMPLE_RATE
    inputs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    peaks_db: dict[str, float] = field(default_factory=dict)  # sample peak of each stem as read

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.f32"

    def load(self, name: str) -> np.ndarray:
        """One whole stem, ``(2, n)`` float32 (zero-padded where its file is shorter)."""
        out = np.zeros((2, self.n), np.float32)
        self._read_into(name, 0, out)
        return out

    def save(self, name: str, audio: np.ndarray) -> None:
        _write_raw(self.path(name), audio)

    def read(self, start: int, length: int) -> np.ndarray:
        """Samples ``[start, start + length)`` of every stem: ``(len(names), 2, length)`` float32, zeros
        outside ``[0, n)``."""
        out = np.zeros((len(self.names), 2, length), np.float32)
        lo, hi = max(start, 0), min(start + length, self.n)
        if hi > lo:
            for i, name in enumerate(self.names):
                self._read_into(name, lo, out[i, :, lo - start : hi - start])
        return out

    def _read_into(self, name: str, start: int, out: np.ndarray) -> None:
        """``out`` (2, m) <- samples [start, start + m) of stem ``name``, read with plain file reads (a memory
        map would count the whole file in the process's resident memory as it is read)."""
        m = out.shape[-1]
        size = self.path(name).stat().st_size // 8  # samples per channel in the file
        with open(self.path(name), "rb") as fh:
            for ch in range(2):
                take = max(0, min(m, size - start))
                if take:
                    fh.seek(4 * (ch * size + start))
                    buf = np.fromfile(fh, np.float32, take)
                    out[ch, : buf.size] = buf


def spill_buses(files: Mapping[str, Sequence[Path]], classes: Sequence[str], folder: Path,
                on_file_done: Callable[[Path], None] | None = None) -> SpilledStems:
    """Read each class bus (:func:`fxmix.dsp.stems.load_buses`, one class at a time) into a raw file of
    ``folder``; classes without files are silence. The output rate follows load_buses' rule (the inputs'
    rate, else the most common one, ties: highest)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    inputs: list[Path] = []
    rates: Counter = Counter()
    lengths: dict[str, int] = {}
    peaks: dict[str, float] = {}
    for c in classes:
        paths = list(files.get(c, ()))
        if not paths:
            notes.append(f"{c}: no stem, using silence")
            continue
        loaded = load_buses({c: paths}, [c], on_file_done=on_file_done)
        notes += [m for m in loaded.notes if not m.startswith("inputs at several rates")]
        inputs += loaded.inputs
        for p in paths:
            rates[_file_rate(p)] += 1
        lengths[c] = loaded.buses[c].shape[-1]
        peaks[c] = peak_db(loaded.buses[c])
        _write_raw(folder / f"{c}.f32", loaded.buses[c])
        del loaded
    if not lengths:
        raise AudioInputError("no audio files to mix; give a folder of tracks or --track PATH=CLASS")
    for c in classes:
        if c not in lengths:
            _write_raw(folder / f"{c}.f32", np.zeros((2, 0), np.float32))  # silence: reads as zeros
            peaks[c] = float("-inf")
    input_rate = max(rates.items(), key=lambda kv: (kv[1], kv[0]))[0]
    if len(rates) > 1:
        notes.append(f"inputs at several rates {sorted(rates)}; output at {input_rate} Hz")
    return SpilledStems(folder, list(classes), max(lengths.values()), input_rate, inputs, notes, peaks)


def _write_raw(path: Path, audio: np.ndarray) -> None:
    """A stem as raw float32, channel after channel; a full disk is one :class:`OutputError` naming the file."""
    with writing(path):
        np.ascontiguousarray(audio, np.float32).tofile(path)


def _file_rate(path: Path) -> int:
    try:
        return int(sf.info(str(path)).samplerate)
    except Exception as exc:  # read already succeeded in load_buses; a file changed under us
        raise AudioInputError(f"{path}: cannot read its header ({exc}); check the file") from exc


def normalize_spilled(
    stems: SpilledStems,
    profile: Profile,
    *,
    stages: Sequence[str] = DEFAULT_STAGES,
    seed: int | None = 0,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    on_stem_done: Callable[[str], None] | None = None,
) -> dict[str, StemResult]:
    """Normalize every stem of ``stems`` in place on disk, as :func:`fxmix.dsp.chain.normalize_stems` would
    (same seeds per stem, same relative-silence gate); the results carry params and notes, not audio.

    Two stems are normalized at a time where both fit in ``budget_bytes`` (see :data:`WORK_PER_STEM_BYTE`),
    else one.
    """
    names = stems.names
    rngs = stem_rngs(seed, len(names))
    peaks = stems.peaks_db if set(stems.peaks_db) >= set(names) else {k: peak_db(stems.load(k)) for k in names}
    gate = silence_gate_db(peaks)

    def one(i: int) -> StemResult:
        name = names[i]
        x = stems.load(name)
        result = near_silent_result(name, x, peaks[name], gate)
        if result is None:
            result = normalize_stem(x, C.SAMPLE_RATE, name, profile, stages=stages, rng=rngs[i], in_place=True)
        del x
        stems.save(name, result.audio)
        result.audio = np.zeros((2, 0), np.float32)  # on disk now; the result keeps params and notes
        if on_stem_done is not None:
            on_stem_done(name)
        return result

    stem_bytes = 2 * 4 * stems.n
    workers = 2 if 2 * WORK_PER_STEM_BYTE * stem_bytes <= budget_bytes and len(names) > 1 else 1
    if workers == 1:
        results = [one(i) for i in range(len(names))]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, range(len(names))))
    return dict(zip(names, results))
