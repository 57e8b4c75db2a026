"""Fitting profiles: per-class averages over a wet multitrack dataset, stage by stage, with exact shards;
and conversion of the reference's published features (``features_MUSDB18.npz``).

Sequential like the reference (fxnorm-spec.md §1.2): stage k's features are measured on stems already
normalized by stages 0..k-1 with the averages found so far. One *pass* per stage; a pass over a shard gives
partial sums (:class:`PartialStats`) that :func:`merge_partials` adds exactly, so a cluster runs
``fxmix profile DATA --shard K/N --base PREV.json`` for each shard and ``fxmix profile merge`` once per stage.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.signal import savgol_filter

from . import constants as C
from .audio import read_audio, write_text_atomic
from .bands import band_centers_hz, band_weights
from .chain import normalize_stem
from .errors import AudioInputError, ConfigError
from .features import (
    frames,
    integrated_loudness,
    is_silent,
    measure_dynamics,
    measure_phi,
    measure_spectrum,
    onset_boundaries,
    onset_peak_stats,
    peak_normalize,
)
from .params import CompressorParams
from .profile import FIT_STAGES, Profile, empty_profile, smooth_bands
from .stages import compression

log = logging.getLogger("fxmix.dsp")
PARTIAL_FORMAT = "fxmix-profile-partial"
STEM_EXTS = (".wav", ".flac", ".ogg")
#: The reference's EQ-feature STFT (FFT 65536, hop 16384, sqrt-Hann) and its Savitzky-Golay smoothing of
#: the dataset spectrum (order 1, window in bins per class; fxnorm-spec.md §1.3).
REFERENCE_FFT = 65536
REFERENCE_EQ_SMOOTH_BINS = {"vocals": 401, "other": 401, "drums": 151, "bass": 151}


# ---------------------------------------------------------------- dataset discovery


def find_songs(root: str | Path, split: str | None = None) -> list[Path]:
    """Song folders under ``root/<split>`` (or ``root`` itself): folders holding at least one class stem."""
    base = Path(root) / split if split else Path(root)
    if not base.is_dir():
        raise AudioInputError(
            f"{base}: dataset folder not found (expected <root>/<split>/<song>/<class>.wav)"
        )
    songs = sorted({p.parent for ext in STEM_EXTS for p in base.rglob(f"*{ext}") if p.stem in C.CLASSES})
    return [s for s in songs if s.name != "dry"]


def stem_file(song: Path, class_name: str) -> Path | None:
    for ext in STEM_EXTS:
        p = song / f"{class_name}{ext}"
        if p.exists():
            return p
    return None


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 1, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError as exc:
        raise ConfigError(f"--shard {text!r}: use K/N with 1 <= K <= N, e.g. 2/8") from exc
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {text!r}: use K/N with 1 <= K <= N, e.g. 2/8")
    return k, n


# ---------------------------------------------------------------- one pass


@dataclass
class PartialStats:
    """Sums over stems for one stage: exactly mergeable by addition."""

    stage: str
    counts: dict = field(default_factory=dict)  # class -> n stems
    sums: dict = field(default_factory=dict)  # class -> {key: float | list}
    songs: int = 0
    skipped: list = field(default_factory=list)

    def add(self, class_name: str, values: dict) -> None:
        self.counts[class_name] = self.counts.get(class_name, 0) + 1
        acc = self.sums.setdefault(class_name, {})
        for k, v in values.items():
            acc[k] = np.asarray(v, float) + (acc[k] if k in acc else 0.0)

    def merge(self, other: PartialStats) -> None:
        if other.stage != self.stage:
            raise ConfigError(f"cannot merge partial stats of stage {other.stage!r} into {self.stage!r}")
        for c, n in other.counts.items():
            self.counts[c] = self.counts.get(c, 0) + n
            acc = self.sums.setdefault(c, {})
            for k, v in other.sums[c].items():
                acc[k] = np.asarray(v, float) + (acc[k] if k in acc else 0.0)
        self.songs += other.songs
        self.skipped += other.skipped

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "counts": self.counts,
            "songs": self.songs,
            "skipped": self.skipped,
            "sums": {c: {k: np.asarray(v).tolist() for k, v in d.items()} for c, d in self.sums.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> PartialStats:
        return cls(
            d["stage"],
            dict(d["counts"]),
            {c: {k: np.asarray(v) for k, v in s.items()} for c, s in d["sums"].items()},
            int(d["songs"]),
            list(d.get("skipped", [])),
        )


def _stage_values(stage: str, x: np.ndarray, sample_rate: int) -> dict:
    if stage == "eq":
        return {"spectrum_db": measure_spectrum(x, sample_rate)}
    if stage == "compression":
        mean_db, std_db = measure_dynamics(x, sample_rate)
        return {"onset_peak_mean_db": mean_db, "onset_peak_std_db": std_db}
    if stage == "panning":
        return {"phi": measure_phi(x, sample_rate)}
    return {"loudness_lufs": integrated_loudness(x, sample_rate)}


def _song_pass(args) -> tuple[str, dict, str | None]:
    song, stage, profile_dict = args
    profile = Profile.from_dict(profile_dict)
    out: dict = {}
    try:
        for c in profile.classes:
            f = stem_file(Path(song), c)
            if f is None:
                continue
            x = read_audio(f).audio
            if is_silent(x):
                continue
            done = [s for s in FIT_STAGES if s in profile.stages_fitted]
            if stage == "loudness" and "compression" in done:
                x = _as_reference_loudness_input(x, c, profile, done, str(f))
            elif done:
                x = normalize_stem(x, C.SAMPLE_RATE, c, profile, stages=done, where=str(f)).audio
            out[c] = _stage_values(stage, x, C.SAMPLE_RATE)
    except AudioInputError as exc:
        return str(song), {}, str(exc)
    return str(song), out, None


def run_pass(
    songs: Sequence[Path], stage: str, base: Profile, *, jobs: int = 1, progress: Callable | None = None
) -> PartialStats:
    """Measure ``stage``'s features on every song (after the stages ``base`` already has)."""
    stats = PartialStats(stage)
    tasks = [(str(s), stage, base.to_dict()) for s in songs]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            it = pool.map(_song_pass, tasks, chunksize=1)
            results = list(progress(it, total=len(tasks)) if progress else it)
    else:
        it = map(_song_pass, tasks)
        results = list(progress(it, total=len(tasks)) if progress else it)
    for song, values, err in results:
        if err:
            log.warning("skipping %s: %s", song, err)
            stats.skipped.append(song)
            continue
        stats.songs += 1
        for c, v in values.items():
            stats.add(c, v)
    return stats


def finalize_stage(base: Profile, stats: PartialStats) -> Profile:
    """Turn summed stats into the stage's targets (means; spectra and φ smoothed once)."""
    profile = base
    for c in base.classes:
        n = stats.counts.get(c, 0)
        if n == 0:
            log.warning(
                "class %s has no non-silent stems for stage %s; its target stays empty", c, stats.stage
            )
            continue
        mean = {k: np.asarray(v) / n for k, v in stats.sums[c].items()}
        if "spectrum_db" in mean:
            mean["spectrum_db"] = smooth_bands(mean["spectrum_db"])
        if "phi" in mean:
            mean["phi"] = np.clip(smooth_bands(mean["phi"]), 0.0, 1.0)
        changes = {k: (v if np.ndim(v) else float(v)) for k, v in mean.items()}
        profile = profile.with_targets(c, **changes)
    prov = dict(profile.provenance)
    prov.setdefault("stems_per_class", {})[stats.stage] = stats.counts
    prov.setdefault("songs", stats.songs)
    fitted = tuple(s for s in FIT_STAGES if s in profile.stages_fitted or s == stats.stage)
    return replace(profile, provenance=prov, stages_fitted=fitted)


def next_stage(profile: Profile) -> str | None:
    for s in FIT_STAGES:
        if s not in profile.stages_fitted:
            return s
    return None


def new_profile(root: str | Path, *, split: str | None = None, name: str | None = None) -> Profile:
    """An empty profile with the provenance of a fit over ``root`` (the base of a sharded fit)."""
    return empty_profile(
        name or Path(root).name,
        provenance={
            "dataset": str(Path(root).resolve()),
            "split": split,
            "fxmix": C.VERSION,
            "method": "sequential per-stage averages (fxnorm-spec.md §1.2), dB means, 3-band smoothing once; "
            "loudness after the reference's compression search (absolute onset level)",
        },
    )


def fit_profile(
    root: str | Path,
    *,
    split: str | None = None,
    name: str | None = None,
    jobs: int = 1,
    shard: str | None = None,
    base: Profile | None = None,
    progress: Callable | None = None,
) -> Profile | PartialStats:
    """Fit all remaining stages (no shard) or one stage's partial stats for shard K/N."""
    songs = find_songs(root, split)
    if not songs:
        raise AudioInputError(f"{root}: no songs found (expected <song>/<class>.wav|flac)")
    if base is None:
        base = new_profile(root, split=split, name=name)
    k, n = parse_shard(shard)
    if n > 1:
        stage = next_stage(base)
        if stage is None:
            raise ConfigError("--base profile is already complete; nothing left to fit")
        return run_pass(songs[k - 1 :: n], stage, base, jobs=jobs, progress=progress)
    profile = base
    while (stage := next_stage(profile)) is not None:
        log.info("profile: stage %s over %d songs", stage, len(songs))
        profile = finalize_stage(profile, run_pass(songs, stage, profile, jobs=jobs, progress=progress))
    return profile


def save_partial(path: str | Path, stats: PartialStats, base: Profile, shard: str) -> Path:
    d = {
        "format": PARTIAL_FORMAT,
        "version": 1,
        "shard": shard,
        "base": base.to_dict(),
        "stats": stats.to_dict(),
    }
    return write_text_atomic(path, json.dumps(d) + "\n")


def merge_partials(paths: Sequence[str | Path]) -> Profile:
    """Add shard stats of one stage (same base) and finalize that stage."""
    base = None
    total = None
    for p in paths:
        try:
            d = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not a readable partial profile ({exc})") from exc
        if d.get("format") != PARTIAL_FORMAT:
            raise ConfigError(f"{p}: key 'format' must be {PARTIAL_FORMAT!r}")
        if base is None:
            base = d["base"]
            total = PartialStats.from_dict(d["stats"])
        else:
            if d["base"] != base:
                raise ConfigError(f"{p}: computed from a different --base profile than {paths[0]}")
            total.merge(PartialStats.from_dict(d["stats"]))
    if base is None:
        raise ConfigError("profile merge: give at least one partial file")
    return finalize_stage(Profile.from_dict(base), total)


# ---------------------------------------------------------------- the loudness feature as the reference measures it


def _as_reference_loudness_input(
    x: np.ndarray, c: str, profile: Profile, done: list, where: str
) -> np.ndarray:
    """The stem the loudness pass measures: the fitted stages before loudness, with the compression stage
    as the reference runs it (:func:`reference_compressed`) in place of the chain's."""
    t = profile.targets_for(c)
    if "eq" in done:
        x = normalize_stem(x, C.SAMPLE_RATE, c, profile, stages=["eq"], where=where).audio
    if t.onset_peak_mean_db is not None:
        x = reference_compressed(x, C.SAMPLE_RATE, c, t.onset_peak_mean_db, t.onset_peak_std_db)
    rest = [s for s in done if s not in ("eq", "compression")]
    return normalize_stem(x, C.SAMPLE_RATE, c, profile, stages=rest, where=where).audio if rest else x


def reference_compressed(
    audio: np.ndarray, sample_rate: int, class_name: str, target_mean_db: float, target_std_db: float
) -> np.ndarray:
    """The stem as the reference's compression stage leaves it (fxnorm-spec.md §1.3), for the loudness feature.

    The reference peak-normalizes to -10 dBFS, then reads the onset-peak feature of the compressor's output
    *as it comes out* (no new peak normalization, no make-up gain), so compressing always lowers it: it keeps
    the first setting of its grid (the class ratio, thresholds from -10 dB down to -40 dB, then higher ratios
    up to 20) that puts the feature under the band's upper edge, and the last one (ratio 20, -40 dB) where none
    does. The chain's stage reads the feature re-normalized to -10 dBFS (what compression does to the peaks'
    spread), so a stem of near-equal peaks never reaches the band there and gets the threshold limit, 10-15 LU
    quieter than the reference would leave it. Here: the chain's linked compressor, the input's onsets, and a
    bisection for the highest threshold (the smallest ratio that reaches the band at -40 dB first)."""
    x, _ = peak_normalize(audio)
    s = compression.class_settings(class_name)
    bounds = onset_boundaries(x, sample_rate)
    top = target_mean_db + target_std_db

    def feature(threshold_db: float, ratio: float) -> tuple[float, np.ndarray]:
        p = CompressorParams(threshold_db, ratio, s["attack_ms"], s["release_ms"])
        y = compression.apply(x, sample_rate, p)
        return onset_peak_stats(y, bounds)[0], y

    if onset_peak_stats(x, bounds)[0] < top:
        return x  # in the band or below it: left peak-normalized, as the reference does
    t_min, ratio = C.COMPRESSOR_MIN_THRESHOLD_DB, _reference_ratio(feature, s["ratio"], top)
    f, y = feature(t_min, ratio)
    if f >= top:
        return y
    lo, hi = t_min, C.DYNAMICS_PEAK_NORM_DB  # feature(lo) under the edge, feature(hi) = the input's
    for _ in range(7):  # to 0.25 dB, half the reference's 0.5-dB grid step
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if feature(mid, ratio)[0] < top else (lo, mid)
    return feature(lo, ratio)[1]


def _reference_ratio(feature, start: float, top: float) -> float:
    """The smallest whole ratio from ``start`` to COMPRESSOR_MAX_RATIO whose -40 dB setting puts the feature
    under ``top`` (the maximum where none does)."""
    lo, hi = int(start), int(C.COMPRESSOR_MAX_RATIO)
    if feature(C.COMPRESSOR_MIN_THRESHOLD_DB, float(lo))[0] < top:
        return float(lo)
    while hi - lo > 1:  # feature(lo) above the edge; hi is the answer or the maximum
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if feature(C.COMPRESSOR_MIN_THRESHOLD_DB, float(mid))[0] < top else (mid, hi)
    return float(hi)


# ---------------------------------------------------------------- the EQ feature as the reference averages it


def mean_stft_magnitude(audio: np.ndarray, n_fft: int = REFERENCE_FFT) -> np.ndarray:
    """Mean |STFT| per bin over frames and channels (hop n_fft/4, sqrt-Hann), frames taken a few at a time."""
    x = np.asarray(audio, np.float64)
    x = x if x.ndim == 2 else x[None, :]
    win = np.sqrt(np.hanning(n_fft + 1)[:-1])
    fr = frames(x, n_fft, n_fft // 4)
    total = np.zeros(n_fft // 2 + 1)
    for i in range(0, fr.shape[1], 8):
        total += np.abs(np.fft.rfft(fr[:, i : i + 8] * win, axis=-1)).sum(axis=(0, 1))
    return total / (fr.shape[0] * fr.shape[1])


def reference_eq_feature(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The reference's per-stem EQ feature: :func:`mean_stft_magnitude` of the stem normalized to -30 LUFS
    (divided by its peak where that exceeds 1), a linear magnitude per bin of the 65536-point FFT."""
    x = np.asarray(audio, np.float64) * 10 ** (
        (C.SPECTRUM_REF_LUFS - integrated_loudness(audio, sample_rate)) / 20
    )
    return mean_stft_magnitude(x / max(1.0, float(np.abs(x).max())))


def reference_style_spectrum(mean_magnitude: np.ndarray, class_name: str, sample_rate: int) -> np.ndarray:
    """Band dB of a class's mean EQ feature the way the reference's published spectra became profile
    targets: the reference's Savitzky-Golay smoothing, then band power (:func:`profile_from_reference_npz`,
    less its level offset, which the comparison's level alignment removes)."""
    smoothed = savgol_filter(mean_magnitude, REFERENCE_EQ_SMOOTH_BINS.get(class_name, 401), 1, mode="mirror")
    return _reference_style_band_db(np.maximum(smoothed, 0.0), REFERENCE_FFT, sample_rate)


def _song_eq_features(song: str) -> dict:
    out = {}
    for c in C.CLASSES:
        f = stem_file(Path(song), c)
        if f is not None and not is_silent(x := read_audio(f).audio):
            out[c] = reference_eq_feature(x, C.SAMPLE_RATE)
    return out


def linear_mean_spectra(root: str | Path, split: str | None = None, *, jobs: int = 1) -> dict:
    """Per class, the band spectrum of the wet stems of ``root/split`` averaged as the reference averages
    its dataset feature (fxnorm-spec.md §1.3): the arithmetic mean of the stems' linear magnitude spectra
    at -30 LUFS, smoothed and banded as the reference's published spectra are
    (:func:`reference_style_spectrum`); the like-for-like counterpart of a ``musdb18-reference`` target.

    A profile's own spectrum target is the mean of the stems' dB spectra instead, which lies under this one
    where the stems differ a lot from song to song (a dB mean is the log of a geometric mean)."""
    songs = [str(s) for s in find_songs(root, split)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            per_song = list(pool.map(_song_eq_features, songs, chunksize=1))
    else:
        per_song = [_song_eq_features(s) for s in songs]
    out = {}
    for c in C.CLASSES:
        mags = [d[c] for d in per_song if c in d]
        if mags:
            out[c] = reference_style_spectrum(np.mean(mags, axis=0), c, C.SAMPLE_RATE)
    return out


# ---------------------------------------------------------------- the reference's published features


def _reference_style_band_db(mag: np.ndarray, n_fft: int, sample_rate: int) -> np.ndarray:
    return 10 * np.log10(band_weights(n_fft, sample_rate) @ (mag.astype(float) ** 2) + 1e-12)


def profile_from_reference_npz(path: str | Path, seed: int = 0) -> Profile:
    """Convert the reference's ``features_MUSDB18.npz`` (32769-bin spectra/φ, FFT 65536) to a profile.

    Spectra are mean |STFT| per bin of stems at -30 LUFS; they are mapped to band powers and shifted by a
    calibration offset found by measuring pink noise at -30 LUFS both ways (our power spectrum vs the
    reference's mean-magnitude one), so both live on the same dB scale. φ is band-averaged. Onset and loudness
    targets are copied (note: the onset targets came from aubio 'hfc' onsets per channel; ours differ).
    """
    data = np.load(path, allow_pickle=False)
    sr, n_ref = C.SAMPLE_RATE, REFERENCE_FFT
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((2, sr * 30))
    pink = np.fft.irfft(
        np.fft.rfft(white) / np.sqrt(np.maximum(np.fft.rfftfreq(white.shape[1], 1 / sr), 20.0))
    )
    pink = pink.astype(np.float32)
    pink *= np.float32(10 ** ((C.SPECTRUM_REF_LUFS - integrated_loudness(pink, sr)) / 20))
    ours = measure_spectrum(pink, sr)
    ref_mag = mean_stft_magnitude(pink, n_ref)
    offset = float(np.mean(ours - _reference_style_band_db(ref_mag, n_ref, sr)))
    prof = empty_profile(
        C.REFERENCE_PROFILE,
        provenance={
            "source": "sony/FxNorm-automix trainings/features/features_MUSDB18.npy (commit 916bf7e), "
            "computed by the paper's authors over MUSDB18 train (86 songs), converted pickle-free",
            "licence": "MIT, Copyright (c) 2022 Sony Group Corporation",
            "conversion": f"32769-bin spectra -> 1/6-octave band power dB (+{offset:.2f} dB calibration); "
            "phi band-averaged; loudness and onset targets copied; no further smoothing",
            "fxmix": C.VERSION,
        },
    )
    for c in prof.classes:
        spec = _reference_style_band_db(data[f"eq_{c}"], n_ref, sr) + offset
        phi = band_weights(n_ref, sr) @ data[f"panning_{c}"].astype(float)
        comp = data[f"compression_{c}"]
        prof = prof.with_targets(
            c,
            spectrum_db=spec,
            phi=np.clip(phi, 0, 1),
            loudness_lufs=float(data[f"loudness_{c}"][0]),
            onset_peak_mean_db=float(comp[0]),
            onset_peak_std_db=float(comp[1]),
        )
    return replace(prof, stages_fitted=FIT_STAGES)


def default_jobs() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))


__all__ = [
    "band_centers_hz",
    "fit_profile",
    "linear_mean_spectra",
    "merge_partials",
    "profile_from_reference_npz",
    "reference_compressed",
]
