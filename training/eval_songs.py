"""What the evaluation reads per song: the target, the inputs every method gets, the tracks and the family.

* A session corpus song (``song.json`` + ``tracks/<track>.dry.flac``, ``fxmix data build``): the inputs are
  the dry class stems (the sum of each class's dry tracks), the tracks are its dry tracks (the parts of the
  track-level balance and the mean engineer's session), the family is ``song.json``'s; a ``gm`` song rendered
  with a held-out SoundFont is its own family, ``gm-heldout``.
* A synthetic corpus song with ``dry/`` class stems: those are the inputs; no tracks.
* Anything else (MUSDB18 layout): the wet stems are the inputs; no tracks.

Normalized stems can be kept between runs in a cache folder with the layout, manifest and spec of the
training cache (:mod:`fxmix.training.preprocess`: ``<split>/<song>.npy`` rows = the normalized stems in CLASSES
order, then the target mixture), so `fxmix train` can read an evaluation cache and the reverse.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dsp.audio import atomic_path, read_audio, write_text_atomic
from ..dsp.chain import normalize_stems
from ..dsp.constants import CLASSES, SAMPLE_RATE
from ..dsp.errors import AudioInputError, ConfigError
from .corpus.families import MUSESCORE
from .corpus.session import DrySession, DryTrack
from .data import load_song
from .preprocess import CACHE_FORMAT, MANIFEST_NAME, CacheSpec, read_manifest

#: SoundFonts held out of training: gm songs rendered with them form the ``gm-heldout`` family.
HELD_OUT_SOUNDFONTS = (Path(MUSESCORE).name,)
#: Family of songs without song.json.
NO_FAMILY = "other"


@dataclass
class EvalSong:
    """One song as the evaluation sees it (all audio (2, n) float32 at SAMPLE_RATE, the target's length)."""

    name: str
    path: Path
    family: str
    target: np.ndarray
    wet_stems: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    input_kind: str  # "dry" | "wet"
    tracks: list[DryTrack] = field(default_factory=list)
    meta: dict | None = None

    @property
    def n(self) -> int:
        return self.target.shape[-1]

    def session(self) -> DrySession:
        """The dry tracks as the engineer's session (for the mean engineer)."""
        meta = self.meta or {}
        return DrySession(self.name, meta.get("family", self.family), meta.get("split", "test"),
                          int(meta.get("seed", 0)), meta.get("tempo_bpm"), list(self.tracks))


def family_of(meta: dict | None) -> str:
    if not meta:
        return NO_FAMILY
    fam = str(meta.get("family", NO_FAMILY))
    if fam == "gm" and meta.get("soundfont") in HELD_OUT_SOUNDFONTS:
        return "gm-heldout"
    return fam


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


def _read_meta(path: Path) -> dict | None:
    f = path / "song.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AudioInputError(f"{f}: unreadable song.json ({exc}); rebuild the song with `fxmix data build`") \
            from None


def _tracks(path: Path, meta: dict, n: int) -> list[DryTrack]:
    out = []
    for t in meta.get("tracks", []):
        f = path / t["dry"]
        if not f.is_file():
            raise AudioInputError(f"{f}: dry track listed in {path / 'song.json'} is missing; rebuild the song")
        out.append(DryTrack(t["name"], t["class"], t.get("instrument", ""), _fit(read_audio(f).audio, n),
                            t.get("source", ""), t.get("licence", ""), t.get("role", "")))
    return out


def _dry_dir_stems(path: Path, n: int) -> dict[str, np.ndarray] | None:
    dry = path / "dry"
    if not dry.is_dir():
        return None
    out = {}
    for c in CLASSES:
        f = next((dry / f"{c}{e}" for e in (".flac", ".wav") if (dry / f"{c}{e}").is_file()), None)
        out[c] = _fit(read_audio(f).audio, n) if f is not None else np.zeros((2, n), np.float32)
    return out


def load_eval_song(path: str | os.PathLike, input_source: str = "auto") -> EvalSong:
    """Read one song folder for evaluation.

    Raises:
        ConfigError: ``input_source`` "dry" on a song without dry audio.
        AudioInputError: unreadable audio or song.json.
    """
    path = Path(path)
    song = load_song(path)
    n = song.mixture.shape[1]
    meta = _read_meta(path) if path.is_dir() else None
    tracks = _tracks(path, meta, n) if meta and meta.get("tracks") else []
    dry = None
    if input_source != "wet":
        if tracks:
            dry = {c: np.zeros((2, n), np.float32) for c in CLASSES}
            for t in tracks:
                dry[t.cls] = dry[t.cls] + t.audio
        else:
            dry = _dry_dir_stems(path, n)
    if input_source == "dry" and dry is None:
        raise ConfigError(f"{path}: --inputs dry but the song has neither tracks/ (song.json) nor dry/")
    inputs = dry if dry is not None else song.stems
    return EvalSong(song.name, path, family_of(meta), song.mixture, song.stems, inputs,
                    "dry" if dry is not None else "wet", tracks, meta)


# ------------------------------------------------------------------------------------------ stem cache
class StemCache:
    """Normalized input stems kept between runs (training-cache layout and spec); None folder = no cache."""

    def __init__(self, folder: str | os.PathLike | None, spec: CacheSpec) -> None:
        self.folder = None if folder is None else Path(folder)
        self.spec = spec
        self.manifest = {"format": CACHE_FORMAT, "spec": spec.to_dict(), "songs": {}}
        if self.folder is None:
            return
        if (self.folder / MANIFEST_NAME).is_file():
            self.manifest = read_manifest(self.folder)
            if self.manifest.get("spec") != spec.to_dict():
                raise ConfigError(
                    f"{self.folder / MANIFEST_NAME}: cache built with {self.manifest.get('spec')}, not "
                    f"{spec.to_dict()}; use another --cache folder (or delete this one)"
                )

    def path(self, split: str, song: str) -> Path | None:
        return None if self.folder is None else self.folder / split / f"{song}.npy"

    def load(self, split: str, song: str, n: int) -> dict[str, np.ndarray] | None:
        """The cached normalized stems of a song of ``n`` samples, or None."""
        p, entry = self.path(split, song), self.manifest["songs"].get(f"{split}/{song}")
        if p is None or entry is None or not p.is_file() or entry.get("n_samples") != n:
            return None
        arr = np.load(p, mmap_mode="r")
        return {c: np.asarray(arr[i], np.float32) for i, c in enumerate(CLASSES)}

    def save(self, split: str, song: str, stems: dict[str, np.ndarray], target: np.ndarray) -> dict | None:
        """Write a song's array (atomically); returns its manifest entry for :meth:`record`."""
        p = self.path(split, song)
        if p is None:
            return None
        arr = np.stack([stems[c] for c in CLASSES] + [target]).astype(self.spec.dtype)
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(p) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)
        return {"file": p.name, "n_samples": int(arr.shape[-1]), "split": split}

    def record(self, split: str, song: str, entry: dict | None) -> None:
        """Add entries to the manifest (the parent process only: one writer)."""
        if self.folder is None or entry is None:
            return
        self.manifest["songs"][f"{split}/{song}"] = entry
        write_text_atomic(self.folder / MANIFEST_NAME, json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")


def normalized_inputs(song: EvalSong, prof, stages, cache: StemCache, split: str):
    """(normalized stems, manifest entry to record or None): from the cache, else normalized (and saved)."""
    hit = cache.load(split, song.name, song.n)
    if hit is not None:
        return hit, None
    res = normalize_stems(song.inputs, SAMPLE_RATE, prof, stages=stages, seed=cache.spec.seed, workers=1)
    stems = {c: res[c].audio.astype(np.float32) for c in CLASSES}
    return stems, cache.save(split, song.name, stems, song.target)
