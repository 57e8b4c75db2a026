"""Sessions of corpus v2 for the console mixer: every dry track effect-normalized to its class target, cached.

``prepare_corpus(root, cache, profile)`` reads ``root/<split>/<song>/song.json`` and its dry and wet tracks
(:mod:`fxmix.training.corpus.build`) and writes, per song, ``cache/<split>/<song>/``:

- ``norm.npy`` (tracks, 2, n) float16: each dry track through :func:`fxmix.dsp.chain.normalize_stem` to its
  class's targets in the profile (the FxNorm premise at track level: any level and colour in, comparable
  inputs out);
- ``wet.npy`` (tracks, 2, n) float16: the engineer's wet tracks (after the class buses, with their share of
  the reverb and delay returns), whose sum is the training target;
- ``mean.npy`` (tracks, 2, n) float16, valid and test songs only: the mean engineer's wet tracks
  (:func:`fxmix.training.engineer.mean_engineer_decisions`), the baseline;
- ``level.npy`` (tracks, 2, n) float16: each dry track through the normalization's loudness stage alone, levelled
  to its class's loudness target with its own timbre and dynamics (what a console with ``render_levelled``
  renders);
- ``colour.npy`` (tracks, bands) float32: what the normalization changed per band
  (:func:`fxmix.model.mixer.colour_of` of the dry and the normalized track, the mixer's default features),
  for a mixer that reads it;
- ``meta.json``: names, classes, family, and the parameter targets (below).

**Target: the sum of the wet tracks**, i.e. the engineer's mix before the master (glue compressor, gain,
true-peak limiter). The console has a master gain but no master dynamics, so the pre-master sum is what it
can reach; the master's loudness step is a separate decision.

**Parameter targets** (the engineer's decisions that map onto the console): ``gain_db`` = the engineer's
decided loudness of the track (``decisions.target_lufs``) minus the normalized track's integrated loudness,
the effective fader (track gain + master gain) that puts the normalized track at the engineer's level
(``level_gain_db``: the same for the levelled track); ``pan``
= the engineer's pan (the composer's for the human family). A silent track has no gain target (NaN).

Files are float16 to keep a corpus in memory maps (the relative error, 2**-11, is 66 dB under the signal).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import torch
from fxmix.dsp.audio import read_audio, write_text_atomic
from fxmix.dsp.chain import normalize_stem
from fxmix.dsp.constants import CLASSES, SAMPLE_RATE
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import Profile, load_profile
from fxmix.model.config import MixerConfig
from fxmix.model.mixer import colour_of

from .corpus.session import SPLITS, DrySession, DryTrack
from .engineer import mean_engineer_decisions, render_decisions

log = logging.getLogger(__name__)

CACHE_FORMAT = "fxmix-console-cache-3"


def _loudness(audio: np.ndarray) -> float:
    value = pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(np.asarray(audio, np.float64).T)
    return float(value) if np.isfinite(value) else float("nan")


def _read_song(folder: Path) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    song = json.loads((folder / "song.json").read_text(encoding="utf-8"))
    if song.get("corpus_version") != 2 or not song.get("tracks"):
        raise ConfigError(f"{folder / 'song.json'}: not a corpus v2 session; build one with `fxmix data build`")
    dry, wet = [], []
    for t in song["tracks"]:
        for rel, out in ((t["dry"], dry), (t["wet"], wet)):
            out.append(np.asarray(read_audio(folder / rel).audio, np.float32))
    return song, dry, wet


def _mean_engineer_tracks(song: dict, dry: list[np.ndarray]) -> np.ndarray:
    tracks = [
        DryTrack(t["name"], t["class"], t.get("instrument", ""), a, t.get("source", ""), t.get("licence", ""),
                 role=t.get("role", ""))
        for t, a in zip(song["tracks"], dry)
    ]
    session = DrySession(song["name"], song["family"], song["split"], int(song.get("seed", 0)),
                         song.get("tempo_bpm"), tracks)
    mixed = render_decisions(session, mean_engineer_decisions(session))
    return np.stack(mixed.wet).astype(np.float16)


def prepare_song(folder: Path, out: Path, profile: Profile, *, seed: int = 0) -> Path:
    """Normalize one session's dry tracks and write its cache folder (see the module docstring)."""
    song, dry, wet = _read_song(folder)
    norm, levelled, gains, level_gains, pans, notes = [], [], [], [], [], []
    for k, (t, audio) in enumerate(zip(song["tracks"], dry)):
        rng = np.random.default_rng([seed, int(song.get("index", 0)), k])
        where = f"{song['name']}/{t['name']}"
        res = normalize_stem(audio, SAMPLE_RATE, t["class"], profile, rng=rng, where=where)
        y = np.nan_to_num(np.asarray(res.audio, np.float32))
        lv = np.nan_to_num(np.asarray(normalize_stem(audio, SAMPLE_RATE, t["class"], profile, stages=("loudness",),
                                                     where=where).audio, np.float32))
        norm.append(y)
        levelled.append(lv)
        target = t["decisions"].get("target_lufs")
        for x, dest in ((y, gains), (lv, level_gains)):
            level = _loudness(x)
            dest.append(float(target) - level if target is not None and np.isfinite(level) else float("nan"))
        pans.append(float(t["decisions"].get("pan") or 0.0))
        notes.extend(res.notes)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "norm.npy", np.stack(norm).astype(np.float16))
    np.save(out / "wet.npy", np.stack(wet).astype(np.float16))
    np.save(out / "level.npy", np.stack(levelled).astype(np.float16))
    cfg = MixerConfig()
    np.save(out / "colour.npy", np.stack([
        colour_of(torch.from_numpy(d), torch.from_numpy(y), cfg).numpy() for d, y in zip(dry, norm)
    ]).astype(np.float32))
    if song["split"] != "train":
        np.save(out / "mean.npy", _mean_engineer_tracks(song, dry))
    meta = {
        "format": CACHE_FORMAT,
        "name": song["name"],
        "family": song["family"],
        "split": song["split"],
        "names": [t["name"] for t in song["tracks"]],
        "classes": [t["class"] for t in song["tracks"]],
        "gain_db": [None if np.isnan(g) else round(g, 4) for g in gains],
        "level_gain_db": [None if np.isnan(g) else round(g, 4) for g in level_gains],
        "pan": [round(p, 4) for p in pans],
        "profile": profile.name,
        "notes": notes[:20],
    }
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=1) + "\n")
    return out


def prepare_corpus(
    root: str | Path, cache: str | Path, profile: str = "musdb18-reference", *, workers: int = 2,
    progress: bool = True,
) -> list[Path]:
    """Cache every session of ``root`` (all splits) under ``cache``; songs cached already are kept."""
    from tqdm import tqdm

    root, cache = Path(root), Path(cache)
    prof = load_profile(profile)
    folders = sorted(p.parent for s in SPLITS for p in (root / s).glob("*/song.json"))
    if not folders:
        raise ConfigError(f"{root}: no <split>/<song>/song.json; build a corpus with `fxmix data build --out {root}`")
    todo = [f for f in folders if not (cache / f.parent.name / f.name / "meta.json").is_file()]
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(total=len(todo), disable=not progress,
                                                          desc="normalize sessions") as bar:
        futures = [pool.submit(prepare_song, f, cache / f.parent.name / f.name, prof) for f in todo]
        for fut in futures:
            fut.result()
            bar.update(1)
    return [cache / f.parent.name / f.name for f in folders]


@dataclass
class Session:
    """One cached session: memory-mapped audio and its metadata."""

    folder: Path
    meta: dict
    norm: np.ndarray  # (tracks, 2, n) float16
    wet: np.ndarray  # (tracks, 2, n) float16
    colour: np.ndarray  # (tracks, bands) float32
    level: np.ndarray  # (tracks, 2, n) float16

    @property
    def n_samples(self) -> int:
        return int(self.norm.shape[-1])

    def mean_engineer(self) -> np.ndarray | None:
        path = self.folder / "mean.npy"
        return np.load(path) if path.is_file() else None


def load_sessions(cache: str | Path, split: str) -> list[Session]:
    """The cached sessions of ``split``, sorted by name."""
    out = []
    for meta_path in sorted((Path(cache) / split).glob("*/meta.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != CACHE_FORMAT:
            raise ConfigError(f"{meta_path}: not a console cache ({CACHE_FORMAT}); delete the cache and rebuild")
        f = meta_path.parent
        out.append(Session(f, meta, np.load(f / "norm.npy", mmap_mode="r"), np.load(f / "wet.npy", mmap_mode="r"),
                           np.load(f / "colour.npy"), np.load(f / "level.npy", mmap_mode="r")))
    return out


def crop_batch(sessions: list[Session], rng: np.random.Generator, crop: int | None, max_tracks: int = 24) -> dict:
    """A padded batch of crops (``crop`` samples at a random start; None = whole songs of equal length).

    Returns ``norm``, ``level`` and ``wet`` (batch, tracks, 2, crop) float32 (padding tracks are silent), ``colour``
    (batch, tracks, bands) (the whole song's; zeros for padding), ``mask``
    (batch, tracks), ``classes`` (nested names, padding tracks 'other'), ``gain_db``, ``level_gain_db`` and ``pan`` targets
    (batch, tracks; NaN where unknown or padding), ``families``.
    """
    n_tr = min(max_tracks, max(len(s.meta["classes"]) for s in sessions))
    length = crop or min(s.n_samples for s in sessions)
    b = len(sessions)
    norm = np.zeros((b, n_tr, 2, length), np.float32)
    wet = np.zeros_like(norm)
    level = np.zeros_like(norm)
    mask = np.zeros((b, n_tr), np.float32)
    colour = np.zeros((b, n_tr, sessions[0].colour.shape[-1]), np.float32)
    gain = np.full((b, n_tr), np.nan, np.float32)
    level_gain = np.full((b, n_tr), np.nan, np.float32)
    pan = np.full((b, n_tr), np.nan, np.float32)
    classes = [[CLASSES[-1]] * n_tr for _ in range(b)]
    for i, s in enumerate(sessions):
        k = min(n_tr, len(s.meta["classes"]))
        start = int(rng.integers(0, max(1, s.n_samples - length + 1))) if crop else 0
        norm[i, :k] = s.norm[:k, :, start : start + length]
        wet[i, :k] = s.wet[:k, :, start : start + length]
        level[i, :k] = s.level[:k, :, start : start + length]
        colour[i, :k] = s.colour[:k]
        mask[i, :k] = 1.0
        classes[i][:k] = s.meta["classes"][:k]
        gain[i, :k] = [np.nan if g is None else g for g in s.meta["gain_db"][:k]]
        level_gain[i, :k] = [np.nan if g is None else g for g in s.meta["level_gain_db"][:k]]
        pan[i, :k] = s.meta["pan"][:k]
    return {"norm": norm, "level": level, "wet": wet, "colour": colour, "mask": mask, "classes": classes,
            "gain_db": gain, "level_gain_db": level_gain, "pan": pan,
            "families": [s.meta["family"] for s in sessions]}
