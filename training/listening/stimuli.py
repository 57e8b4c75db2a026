"""Stimuli of a listening test: the folder ``fxmix eval --save-audio`` writes, excerpts and loudness matching.

Layout of a saved-audio folder (one sub-folder per song, written whole by :func:`save_song_audio`)::

    DIR/<song>/stimuli.json        {"song", "sample_rate", "methods": {label: file}, "stems": {class: file}}
    DIR/<song>/<label>.wav         each method's mix (float32 WAV, unclipped), ``target_mix.wav`` the target
    DIR/<song>/stems/<class>.flac  the song's stems (used to pick the excerpt where the most classes play)

A folder made by hand works too: ``stimuli.json`` lists the files; ``stems`` may be empty.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...dsp.audio import atomic_folder, read_audio, write_audio
from ...dsp.errors import AudioInputError, ConfigError
from ...dsp.features import integrated_loudness
from ...dsp.stages.loudness import true_peak_db

log = logging.getLogger(__name__)

#: Rated attributes (the paper's), as (id, label, what the listener is asked).
ATTRIBUTES = (
    ("production_value", "Production Value", "How good is this mix as a finished, professional production?"),
    ("clarity", "Clarity", "How clearly can each instrument and the vocals be heard?"),
    ("excitement", "Excitement", "How engaging and energetic does this mix sound?"),
)
#: Every stimulus is played at this integrated loudness (BS.1770, LUFS), unless a stimulus would then peak above
#: :data:`TRUE_PEAK_CEILING_DB`; then the whole test is played lower by the excess (recorded in the key).
LISTENING_LUFS = -23.0
TRUE_PEAK_CEILING_DB = -1.0
#: Largest allowed distance of a built stimulus from the test's level (LU).
LOUDNESS_TOLERANCE_LU = 0.5
#: The label of the target mix (a human mix on real data: the reference condition).
TARGET_LABEL = "target_mix"
SONG_FILE = "stimuli.json"
#: Raised-cosine fade at both ends of every excerpt, so the loop point does not click (s).
LOOP_FADE_S = 0.01
#: Excerpt choice: 100-ms frames; a class plays in a frame whose RMS is above -60 dBFS and within 30 dB of the
#: class's loudest frame.
ACTIVITY_FRAME_S = 0.1
ACTIVITY_FLOOR_DB = -60.0
ACTIVITY_RANGE_DB = 30.0


def method_label(name: str) -> str:
    """A file-safe label for a method: packaged names as they are, a model folder as its last two parts."""
    parts = Path(name).parts
    text = "-".join(parts[-2:]) if len(parts) > 1 else name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-") or "method"


def check_save_dir(save_dir: str | os.PathLike, dataset_root: str | os.PathLike) -> Path:
    """Refuse a saved-audio folder that is, or lies inside, the dataset (song folders would be replaced)."""
    out, root = Path(save_dir).resolve(), Path(dataset_root).resolve()
    if out == root or root in out.parents:
        raise ConfigError(
            f"--save-audio {save_dir}: it lies inside the dataset {dataset_root}; choose a folder outside it"
        )
    return out


def save_song_audio(
    folder: str | os.PathLike,
    song: str,
    target: np.ndarray,
    mixes: Mapping[str, np.ndarray],
    stems: Mapping[str, np.ndarray],
    sample_rate: int,
) -> Path:
    """Write one song's mixes, its target and its stems in the saved-audio layout (the folder is replaced whole).

    Args:
        folder: the song's folder (``DIR/<song>``).
        song: the song's name.
        target: (2, n) the target mix.
        mixes: method name -> (2, n) mix (labels from :func:`method_label`; a clash gets a numeric suffix).
        stems: class -> (2, n) stems.
        sample_rate: Hz.
    """
    labels: dict[str, str] = {}
    for name in [TARGET_LABEL, *mixes]:
        label, k = method_label(name) if name != TARGET_LABEL else TARGET_LABEL, 2
        base = label
        while label in labels.values():
            label, k = f"{base}_{k}", k + 1
        labels[name] = label
    with atomic_folder(folder) as tmp:
        files = {}
        for name, audio in [(TARGET_LABEL, target), *mixes.items()]:
            files[labels[name]] = f"{labels[name]}.wav"
            write_audio(tmp / files[labels[name]], audio, sample_rate)
        stem_files = {}
        for c, x in stems.items():
            if np.any(x):
                stem_files[c] = f"stems/{c}.flac"
                write_audio(tmp / stem_files[c], x, sample_rate)
        meta = {
            "song": song,
            "sample_rate": int(sample_rate),
            "methods": files,
            "stems": stem_files,
            "method_names": {labels[n]: n for n in labels},
        }
        (tmp / SONG_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return Path(folder)


@dataclass(frozen=True)
class SongStimuli:
    """One song of a saved-audio folder: method label -> file, class -> stem file."""

    name: str
    folder: Path
    methods: dict[str, Path]
    stems: dict[str, Path]


def find_songs(root: str | os.PathLike) -> list[SongStimuli]:
    """Every song folder (with ``stimuli.json``) under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder; give the folder written by `fxmix eval --save-audio`")
    out = []
    for meta_path in sorted(root.glob(f"*/{SONG_FILE}")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            methods = {str(k): meta_path.parent / v for k, v in meta["methods"].items()}
            stems = {str(k): meta_path.parent / v for k, v in meta.get("stems", {}).items()}
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise ConfigError(
                f"{meta_path}: not a valid {SONG_FILE} ({exc}); rerun `fxmix eval --save-audio`"
            ) from exc
        for p in [*methods.values(), *stems.values()]:
            if not p.is_file():
                raise ConfigError(
                    f"{meta_path}: lists {p.name}, which is missing; rerun `fxmix eval --save-audio`"
                )
        out.append(
            SongStimuli(str(meta.get("song", meta_path.parent.name)), meta_path.parent, methods, stems)
        )
    if not out:
        raise ConfigError(
            f"{root}: no song folders with {SONG_FILE}; make them with `fxmix eval ... --save-audio {root}`"
        )
    return out


def _frame_db(x: np.ndarray, frame: int) -> np.ndarray:
    n = x.shape[-1] // frame
    power = np.mean(
        np.square(x[:, : n * frame].astype(np.float64)).reshape(x.shape[0], n, frame), axis=(0, 2)
    )
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def active_classes(stems: Mapping[str, np.ndarray], sample_rate: int) -> np.ndarray:
    """Number of classes playing in each 100-ms frame (see :data:`ACTIVITY_FLOOR_DB`)."""
    frame = int(round(ACTIVITY_FRAME_S * sample_rate))
    count = None
    for x in stems.values():
        db = _frame_db(x, frame)
        active = (db > ACTIVITY_FLOOR_DB) & (db > db.max() - ACTIVITY_RANGE_DB)
        count = active.astype(np.int64) if count is None else count + active[: len(count)]
    return np.zeros(0, np.int64) if count is None else count


def pick_excerpt(
    n: int, sample_rate: int, excerpt_s: float, stems: Mapping[str, np.ndarray]
) -> tuple[int, int]:
    """(start, stop) samples of the ``excerpt_s`` window where the most classes play (the sum over its frames of
    :func:`active_classes`; the earliest such window). The whole song when it is shorter; the song's start when
    there are no stems."""
    length = int(round(excerpt_s * sample_rate))
    if length >= n or not stems:
        return 0, min(n, length)
    frame = int(round(ACTIVITY_FRAME_S * sample_rate))
    count = active_classes(stems, sample_rate)
    width = max(1, length // frame)
    if len(count) <= width:
        return 0, length
    sums = np.convolve(count, np.ones(width, np.int64), mode="valid")
    start = int(np.argmax(sums)) * frame
    start = min(start, n - length)
    return start, start + length


def loop_fade(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of :data:`LOOP_FADE_S` (a click-free loop point)."""
    k = min(int(round(LOOP_FADE_S * sample_rate)), x.shape[-1] // 2)
    y = x.astype(np.float32, copy=True)
    if k > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)).astype(np.float32)
        y[:, :k] *= ramp
        y[:, -k:] *= ramp[::-1]
    return y


def match_loudness(
    stimuli: Mapping[str, np.ndarray], sample_rate: int, level_lufs: float = LISTENING_LUFS
) -> tuple[float, dict[str, float]]:
    """The level the stimuli can share and each one's gain (dB) to it.

    Each stimulus is gained to ``level_lufs``; if one would then peak above :data:`TRUE_PEAK_CEILING_DB` (true
    peak), the shared level is lowered by the excess, with a warning. Returns (level, {name: gain_db}).

    Raises:
        AudioInputError: a stimulus is silent (nothing to match).
    """
    loud, peak = {}, {}
    for name, x in stimuli.items():
        loud[name] = integrated_loudness(x, sample_rate)
        if not np.isfinite(loud[name]):
            raise AudioInputError(
                f"{name}: the excerpt is silent; choose another excerpt length or leave the method out"
            )
        peak[name] = true_peak_db(x)
    excess = max(peak[k] + level_lufs - loud[k] - TRUE_PEAK_CEILING_DB for k in stimuli)
    level = level_lufs
    if excess > 0:
        level = level_lufs - excess
        log.warning(
            "stimuli played at %.2f LUFS, not %.1f: at %.1f one would peak %.2f dB above %.1f dBTP",
            level,
            level_lufs,
            level_lufs,
            excess,
            TRUE_PEAK_CEILING_DB,
        )
    return level, {k: level - loud[k] for k in stimuli}


def read_excerpt(path: Path, start: int, stop: int, sample_rate: int) -> np.ndarray:
    """(2, stop - start) excerpt of an audio file, zero-padded where the file is shorter."""
    x = read_audio(path, sample_rate).audio[:, start:stop]
    if x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)
    return np.pad(x, ((0, 0), (0, stop - start - x.shape[1])))
