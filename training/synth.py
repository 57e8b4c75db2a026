"""Synthetic wet multitrack corpus: dry procedural songs -> class-aware engineer chains -> bus -> mixture.

Layout written by :func:`synthesize_corpus` (the MUSDB18 layout plus extras)::

    DIR/corpus.json                                  # what was made, sources used, the command
    DIR/<split>/<song>/{vocals,drums,bass,other}.flac # wet stems (pre-bus)
    DIR/<split>/<song>/mixture.flac                   # sum of wet stems -> glue comp -> limiter -> trim
    DIR/<split>/<song>/dry/{vocals,drums,bass,other}.flac
    DIR/<split>/<song>/params.json                    # family, seed, score, timbres, every chain parameter

Storage: FLAC PCM_24 by default. Its quantization step (2**-23 full scale, error <= 6e-8 per sample) keeps the
sum of the four stored wet stems within ~3e-7 of the in-memory pre-bus sum, well inside the 1e-5 the tests
check, at about half the size of float WAV; wet stems are trimmed together so none peaks above -0.5 dBFS (PCM
clips at 0 dBFS). ``--format wav`` writes float32 WAV instead.

Determinism: song ``i`` of a corpus with seed ``K`` is drawn from ``np.random.default_rng([K, i, ...])``, so its
audio does not depend on ``--jobs`` or on the order the workers finish. The split of song ``i`` depends on
``--songs`` and ``--split-ratios`` (train songs first, then valid, then test); test songs use a held-out
source family (see :mod:`fxmix.training.synth_sources`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyloudnorm

from ..dsp.audio import db_to_gain, peak_db, write_audio, write_text_atomic
from ..dsp.constants import CLASSES, SAMPLE_RATE
from ..dsp.errors import ConfigError
from .synth_chains import (
    STEM_PEAK_MAX_DB,
    apply_bus,
    draw_bus_params,
    draw_stem_params,
    loudness_lufs,
    process_stem,
)
from .synth_soundfont import render_dry_soundfont, soundfont_available
from .synth_sources import TEST_FAMILIES, TRAIN_FAMILIES, compose, render_dry

SPLITS = ("train", "valid", "test")
DEFAULT_SPLIT_RATIOS = (0.8, 0.1, 0.1)
SYNTH_VERSION = 1
#: Dry-stem sources: numpy procedural synthesis (always there) and the optional TinySoundFont path.
SOURCES = ("procedural", "soundfont")


def resolve_sources(sources: str | Sequence[str] = "auto") -> tuple[str, ...]:
    """``"auto"`` -> procedural, plus soundfont when its optional packages are importable.

    Raises:
        ConfigError: unknown source, or soundfont asked for but not installed.
    """
    if isinstance(sources, str):
        if sources == "auto":
            return ("procedural", "soundfont") if soundfont_available() else ("procedural",)
        sources = [s for s in sources.split(",") if s]
    out = tuple(dict.fromkeys(sources))
    bad = [s for s in out if s not in SOURCES]
    if bad or not out:
        raise ConfigError(f"--sources {','.join(out)}: use auto or a comma list of {', '.join(SOURCES)}")
    if "soundfont" in out and not soundfont_available():
        raise ConfigError(
            "--sources soundfont: needs `pip install pretty_midi` and `pip install --no-deps tinysoundfont` "
            "(or use --sources procedural)"
        )
    return out


@dataclass(frozen=True)
class SongSpec:
    """What to render for one song. ``index`` and ``corpus_seed`` fully determine the audio."""

    name: str
    index: int
    split: str
    family: str
    source: str
    corpus_seed: int
    seconds: float
    sample_rate: int = SAMPLE_RATE


@dataclass
class RenderedSong:
    """One rendered song, all audio (2, n) float32 at ``spec.sample_rate``."""

    spec: SongSpec
    dry: dict[str, np.ndarray]
    wet: dict[str, np.ndarray]
    prebus: np.ndarray
    mixture: np.ndarray
    params: dict = field(default_factory=dict)


def split_counts(n_songs: int, ratios: Sequence[float]) -> dict[str, int]:
    """Songs per split (largest remainder); every split with a ratio > 0 gets at least one song if possible.

    Raises:
        ConfigError: wrong number of ratios, negative ratios or all zero.
    """
    if len(ratios) != len(SPLITS) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ConfigError(
            f"--split-ratios {','.join(map(str, ratios))}: give three non-negative numbers for "
            "train,valid,test with a positive sum, e.g. 0.8,0.1,0.1"
        )
    total = float(sum(ratios))
    exact = [n_songs * r / total for r in ratios]
    counts = [int(math.floor(e)) for e in exact]
    for i in sorted(range(3), key=lambda k: exact[k] - counts[k], reverse=True)[: n_songs - sum(counts)]:
        counts[i] += 1
    for i in range(3):  # guarantee a song in each requested split when there are enough songs
        if ratios[i] > 0 and counts[i] == 0:
            donor = max(range(3), key=lambda k: counts[k])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return dict(zip(SPLITS, counts))


def plan_corpus(
    n_songs: int,
    seconds: float,
    seed: int,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    sample_rate: int = SAMPLE_RATE,
    sources: Sequence[str] = ("procedural",),
) -> list[SongSpec]:
    """Assign split, source, family and name to each song index (cheap; no audio)."""
    if n_songs < 1:
        raise ConfigError(f"--songs {n_songs}: give at least 1 song")
    if not (1.0 <= seconds <= 600.0):
        raise ConfigError(f"--seconds {seconds}: give a song length between 1 and 600 s")
    counts = split_counts(n_songs, split_ratios)
    specs: list[SongSpec] = []
    index = 0
    for split in SPLITS:
        for _ in range(counts[split]):
            rng = np.random.default_rng([int(seed), index, 0])
            families = TEST_FAMILIES if split == "test" else TRAIN_FAMILIES
            family = str(families[int(rng.integers(len(families)))])
            source = str(sources[int(rng.integers(len(sources)))])
            name = f"synth{int(seed)}-{index:05d}-{family}" + ("-sf" if source == "soundfont" else "")
            specs.append(SongSpec(name, index, split, family, source, int(seed), float(seconds), sample_rate))
            index += 1
    return specs


_METERS: dict[int, pyloudnorm.Meter] = {}


def _meter(sample_rate: int) -> pyloudnorm.Meter:
    if sample_rate not in _METERS:
        _METERS[sample_rate] = pyloudnorm.Meter(sample_rate)
    return _METERS[sample_rate]


def render_song(spec: SongSpec) -> RenderedSong:
    """Render dry stems, wet stems, the pre-bus sum and the mixture of one song (in memory)."""
    sr = spec.sample_rate
    rng = np.random.default_rng([spec.corpus_seed, spec.index, 1])
    meter = _meter(sr)
    score = compose(spec.family, spec.seconds, rng)
    if spec.source == "soundfont":
        dry, timbres = render_dry_soundfont(score, spec.seconds, sr, rng, held_out=spec.split == "test")
    else:
        dry, timbres = render_dry(score, spec.seconds, sr, rng)
    chain_rng = np.random.default_rng([spec.corpus_seed, spec.index, 2])
    stem_params: dict[str, dict] = {}
    wet: dict[str, np.ndarray] = {}
    for name in CLASSES:
        p = draw_stem_params(name, chain_rng, score.bpm)
        wet[name] = process_stem(dry[name], p, sr, meter)
        stem_params[name] = p
    # trim all wet stems together if one would clip in PCM storage (keeps the balance)
    top_db = max(peak_db(x) for x in wet.values())
    stem_trim_db = min(0.0, STEM_PEAK_MAX_DB - top_db) if math.isfinite(top_db) else 0.0
    if stem_trim_db < 0.0:
        g = np.float32(db_to_gain(stem_trim_db))
        wet = {k: (v * g).astype(np.float32) for k, v in wet.items()}
    prebus = np.sum(np.stack([wet[k] for k in CLASSES]), axis=0, dtype=np.float32)
    bus = draw_bus_params(chain_rng)
    mixture = apply_bus(prebus, bus, sr, meter)
    params = {
        "synth_version": SYNTH_VERSION,
        "name": spec.name,
        "split": spec.split,
        "source": spec.source,
        "family": spec.family,
        "corpus_seed": spec.corpus_seed,
        "index": spec.index,
        "seed_note": "audio rng = default_rng([corpus_seed, index, 1]); chain rng = default_rng([corpus_seed, index, 2])",
        "seconds": spec.seconds,
        "sample_rate": sr,
        "score": score.meta(),
        "timbres": timbres,
        "stems": stem_params,
        "stem_trim_db": round(float(stem_trim_db), 4),
        "bus": bus,
        "loudness": {
            **{f"{k}_lufs": _r(loudness_lufs(meter, wet[k])) for k in CLASSES},
            "prebus_lufs": _r(loudness_lufs(meter, prebus)),
            "prebus_peak_db": _r(peak_db(prebus)),
            "mixture_lufs": bus["lufs"],
            "mixture_peak_db": bus["peak_db"],
        },
    }
    return RenderedSong(spec, dry, wet, prebus, mixture, params)


def _r(v: float) -> float | None:
    return round(float(v), 3) if math.isfinite(v) else None


def write_song(root: str | os.PathLike, song: RenderedSong, audio_format: str = "flac") -> Path:
    """Write one rendered song under ``root/<split>/<name>/`` (atomic per file; params.json last)."""
    ext = {"flac": ".flac", "wav": ".wav"}.get(audio_format)
    if ext is None:
        raise ConfigError(f"--format {audio_format!r}: use flac or wav")
    folder = Path(root) / song.spec.split / song.spec.name
    sr = song.spec.sample_rate
    for name in CLASSES:
        write_audio(folder / f"{name}{ext}", song.wet[name], sr)
        write_audio(folder / "dry" / f"{name}{ext}", song.dry[name], sr)
    write_audio(folder / f"mixture{ext}", song.mixture, sr)
    write_text_atomic(folder / "params.json", json.dumps(song.params, indent=1) + "\n")
    return folder


def _work(job: tuple[SongSpec, str, str]) -> dict:
    spec, root, audio_format = job
    t0 = time.perf_counter()
    song = render_song(spec)
    write_song(root, song, audio_format)
    return {
        "name": spec.name,
        "split": spec.split,
        "family": spec.family,
        "mixture_lufs": song.params["loudness"]["mixture_lufs"],
        "seconds_wall": round(time.perf_counter() - t0, 3),
    }


@dataclass
class CorpusSummary:
    """What :func:`synthesize_corpus` made."""

    root: str
    n_songs: int
    seconds: float
    seed: int
    jobs: int
    split_counts: dict[str, int]
    families: dict[str, list[str]]
    sources_used: list[str]
    wall_s: float
    songs_per_minute: float
    songs: list[dict]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"


def synthesize_corpus(
    out_dir: str | os.PathLike,
    n_songs: int,
    seconds: float,
    seed: int,
    *,
    jobs: int = 1,
    split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
    audio_format: str = "flac",
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    sources: str | Sequence[str] = "procedural",
) -> CorpusSummary:
    """Render and write a whole corpus, in parallel over ``jobs`` processes; writes ``corpus.json``.

    Raises:
        ConfigError: bad sizes/ratios/sources, or songs already exist in ``out_dir`` and ``overwrite`` is False.

    ``sources``: "auto" (procedural, plus soundfont when installed) or a list of :data:`SOURCES`; each song
    draws one of them from its own seed.
    """
    from tqdm import tqdm

    root = Path(out_dir)
    specs = plan_corpus(n_songs, seconds, seed, split_ratios, sources=resolve_sources(sources))
    if not overwrite:
        clash = [s for s in specs if (root / s.split / s.name / "params.json").exists()]
        if clash:
            raise ConfigError(
                f"{root / clash[0].split / clash[0].name}: song already exists ({len(clash)} in all); "
                "choose another -o folder or pass --overwrite"
            )
    jobs = max(1, int(jobs))
    t0 = time.perf_counter()
    results: list[dict] = []
    work = [(s, str(root), audio_format) for s in specs]
    bar = tqdm(total=len(work), desc="synth", unit="song", disable=not progress)
    if jobs == 1:
        for w in work:
            results.append(_work(w))
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_work, w) for w in work]
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.update(1)
    bar.close()
    wall_s = time.perf_counter() - t0
    results.sort(key=lambda r: r["name"])
    fams: dict[str, list[str]] = {
        s: sorted({r["family"] for r in results if r["split"] == s}) for s in SPLITS
    }
    summary = CorpusSummary(
        root=str(root),
        n_songs=len(results),
        seconds=float(seconds),
        seed=int(seed),
        jobs=jobs,
        split_counts={s: sum(r["split"] == s for r in results) for s in SPLITS},
        families=fams,
        sources_used=sorted({s.source for s in specs}),
        wall_s=round(wall_s, 3),
        songs_per_minute=round(60.0 * len(results) / max(wall_s, 1e-9), 2),
        songs=results,
    )
    meta = asdict(summary)
    meta["command"] = command
    meta["synth_version"] = SYNTH_VERSION
    write_text_atomic(root / "corpus.json", json.dumps(meta, indent=1) + "\n")
    return summary
