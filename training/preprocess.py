"""Training-set preprocessing, done once: fit (or load) a profile, effect-normalize every song, cache the result.

Cache layout (``CACHE``)::

    CACHE/manifest.json          # format, profile sha256, stages, input source, dtype, one entry per song
    CACHE/profile.json           # the profile every split was normalized with (the train-split fit)
    CACHE/<split>/<song>.npy     # (5, 2, n): normalized vocals, drums, bass, other (CLASSES order), mixture

The mixture (the training target) is stored as read, never normalized. ``.npy`` files are memory-mapped by the
training loop, so random crops read only the samples they need. The run is resumable: a song whose ``.npy`` and
manifest entry exist is skipped, and every file (``.npy``, manifest) is written atomically, so killing the run
at any point loses at most the songs being processed. The profile is fitted on the **train** split only and used
for every split (valid and test never leak into it).

Inputs: ``"wet"`` normalizes the wet stems (the paper's recipe: normalized wet stems -> wet mixture);
``"dry"`` normalizes the dry stems a synthetic corpus stores in ``<song>/dry/`` (what ``fxmix mix`` feeds the
network at inference: normalized dry stems).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..dsp.audio import atomic_path, read_audio, write_text_atomic
from ..dsp.chain import DEFAULT_STAGES, check_stages, normalize_stems
from ..dsp.constants import CLASSES, SAMPLE_RATE
from ..dsp.errors import AudioInputError, ConfigError
from ..dsp.profile import Profile, load_profile
from ..dsp.profile_fit import fit_profile
from .data import MultitrackDataset, load_song

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
PROFILE_NAME = "profile.json"
CACHE_FORMAT = "fxmix-train-cache-1"
INPUT_SOURCES = ("wet", "dry")
DTYPES = ("float16", "float32")
#: Rows of a cached song array: the stems in CLASSES order, then the target mixture.
ROWS = (*CLASSES, "mixture")


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds; a cache built with another spec is refused (never silently mixed).

    Attributes:
        profile_sha256: sha256 of the canonical JSON of the profile used.
        stages: normalization stages, canonical order.
        input_source: "wet" or "dry".
        dtype: "float16" or "float32" storage.
        seed: normalization seed.
    """

    profile_sha256: str
    stages: tuple[str, ...]
    input_source: str
    dtype: str
    seed: int

    def to_dict(self) -> dict:
        return {
            "profile_sha256": self.profile_sha256,
            "stages": list(self.stages),
            "input_source": self.input_source,
            "dtype": self.dtype,
            "seed": self.seed,
        }


def profile_sha256(profile: Profile) -> str:
    """sha256 of the profile's targets (name and provenance excluded: they do not change the audio)."""
    d = {k: v for k, v in profile.to_dict().items() if k not in ("name", "provenance")}
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(cache_dir: str | os.PathLike) -> dict:
    """The cache manifest (``{"format", "spec", "songs": {"<split>/<song>": {...}}}``).

    Raises:
        ConfigError: no manifest, or an unreadable one (names the file and the fix).
    """
    path = Path(cache_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: no training cache here; run `fxmix train` (it preprocesses) first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable cache manifest ({exc}); delete the cache folder") from None
    if data.get("format") != CACHE_FORMAT:
        raise ConfigError(
            f"{path}: format {data.get('format')!r}, expected {CACHE_FORMAT}; rebuild the cache"
        )
    return data


def resolve_profile(
    profile: str, data_root: str | os.PathLike, cache_dir: str | os.PathLike, *, jobs: int = 1
) -> Profile:
    """``"fit"``: fit on ``data_root``'s train split once (kept as ``CACHE/profile.json``); else load by name/path."""
    cached = Path(cache_dir) / PROFILE_NAME
    if profile != "fit":
        return load_profile(profile)
    if cached.is_file():
        log.info("preprocess: reusing the fitted train profile %s", cached)
        return load_profile(cached)
    log.info("preprocess: fitting the profile on %s/train (all splits use it)", data_root)
    prof = fit_profile(
        data_root,
        split="train",
        name=f"{Path(data_root).name}-train",
        jobs=jobs,
        progress=lambda it, total: tqdm(it, total=total, desc="profile fit", unit="song"),
    )
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    prof.save(cached)
    return prof


def _read_inputs(song_path: Path, input_source: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    song = load_song(song_path)
    if input_source == "wet":
        return song.stems, song.mixture
    dry_dir = song_path / "dry"
    if not dry_dir.is_dir():
        raise AudioInputError(f"{song_path}: input_source = 'dry' but there is no dry/ folder")
    n = song.mixture.shape[1]
    stems = {}
    for c in CLASSES:
        files = [dry_dir / f"{c}{ext}" for ext in (".flac", ".wav")]
        f = next((p for p in files if p.is_file()), None)
        x = read_audio(f).audio if f is not None else np.zeros((2, n), np.float32)
        stems[c] = x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return stems, song.mixture


def normalized_song_array(
    song_path: str | os.PathLike,
    profile: Profile,
    *,
    stages: Sequence[str] = DEFAULT_STAGES,
    input_source: str = "wet",
    seed: int = 0,
) -> np.ndarray:
    """(5, 2, n) float32: the song's stems normalized with ``profile`` (CLASSES order) and its mixture."""
    stems, mixture = _read_inputs(Path(song_path), input_source)
    res = normalize_stems(stems, SAMPLE_RATE, profile, stages=stages, seed=seed, workers=1)
    return np.stack([res[c].audio for c in CLASSES] + [mixture]).astype(np.float32)


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def _song_job(args) -> tuple[str, dict | None, str | None]:
    key, song_path, out_path, profile_dict, stages, input_source, dtype, seed = args
    try:
        arr = normalized_song_array(
            song_path, Profile.from_dict(profile_dict), stages=stages, input_source=input_source, seed=seed
        )
    except AudioInputError as exc:
        return key, None, str(exc)
    if not np.all(np.isfinite(arr)):
        return key, None, f"{song_path}: normalization produced non-finite samples"
    _save_npy_atomic(Path(out_path), arr.astype(dtype))
    return key, {"file": str(Path(out_path).name), "n_samples": int(arr.shape[-1])}, None


def preprocess(
    data_root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    profile: str = "fit",
    splits: Sequence[str] = ("train", "valid"),
    stages: Sequence[str] = DEFAULT_STAGES,
    input_source: str = "wet",
    dtype: str = "float32",
    seed: int = 0,
    jobs: int = 1,
    progress: bool = True,
) -> dict:
    """Build (or complete) the normalized-stem cache of ``data_root`` in ``cache_dir``. Returns the manifest.

    Args:
        data_root: MUSDB18-layout root (``<root>/<split>/<song>/``), e.g. ``fxmix data synth`` output.
        cache_dir: cache folder (created; an existing cache with the same spec is completed, not redone).
        profile: "fit" (fit on the train split, once) or a factory profile name / JSON path.
        splits: splits to cache.
        stages: normalization stages.
        input_source: "wet" stems or the "dry" stems of a synthetic corpus.
        dtype: storage type of the arrays ("float16" halves disk and RAM; "float32" is exact).
        seed: normalization seed (only the reverb stage draws randomness).
        jobs: worker processes (songs in parallel).
        progress: tqdm bar.

    Raises:
        ConfigError: bad option, or ``cache_dir`` holds a cache built with a different spec.
    """
    if input_source not in INPUT_SOURCES:
        raise ConfigError(f"input_source {input_source!r}: use one of {INPUT_SOURCES}")
    if dtype not in DTYPES:
        raise ConfigError(f"cache dtype {dtype!r}: use one of {DTYPES}")
    stages = check_stages(stages)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    prof = resolve_profile(profile, data_root, cache, jobs=jobs)
    spec = CacheSpec(profile_sha256(prof), stages, input_source, dtype, int(seed))
    manifest = _open_manifest(cache, spec, data_root)
    if not (cache / PROFILE_NAME).is_file():
        prof.save(cache / PROFILE_NAME)
    tasks = []
    for split in splits:
        ds = MultitrackDataset(data_root, split)
        for song_path in ds.songs:
            key = f"{split}/{song_path.name}"
            out = cache / split / f"{song_path.name}.npy"
            if key in manifest["songs"] and out.is_file():
                continue
            tasks.append(
                (key, str(song_path), str(out), prof.to_dict(), stages, input_source, dtype, int(seed))
            )
    if not tasks:
        log.info("preprocess: cache %s is complete (%d songs)", cache, len(manifest["songs"]))
        return manifest
    _run_song_jobs(tasks, manifest, cache / MANIFEST_NAME, jobs=jobs, progress=progress)
    return manifest


def _open_manifest(cache: Path, spec: CacheSpec, data_root: str | os.PathLike) -> dict:
    """The cache's manifest, or a new empty one.

    Raises:
        ConfigError: the cache was built with another spec.
    """
    manifest_path = cache / MANIFEST_NAME
    if not manifest_path.is_file():
        return {
            "format": CACHE_FORMAT,
            "spec": spec.to_dict(),
            "data_root": str(Path(data_root)),
            "songs": {},
        }
    manifest = read_manifest(cache)
    if manifest.get("spec") != spec.to_dict():
        raise ConfigError(
            f"{manifest_path}: this cache was built with {manifest.get('spec')}, not {spec.to_dict()}; "
            "use another cache_dir (or delete this one)"
        )
    return manifest


def _run_song_jobs(
    tasks: list[tuple], manifest: dict, manifest_path: Path, *, jobs: int, progress: bool
) -> None:
    """Normalize and cache the songs of ``tasks``; each finished song is recorded in the manifest at once,
    so an interrupted run keeps what it did."""
    bar = tqdm(total=len(tasks), desc="preprocess", unit="song", disable=not progress)

    def record(key: str, entry: dict | None, err: str | None) -> None:
        bar.update(1)
        if err is not None:
            log.warning("preprocess: skipping %s: %s", key, err)
            return
        manifest["songs"][key] = dict(entry, split=key.split("/", 1)[0])
        write_text_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    try:
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                for result in pool.map(_song_job, tasks, chunksize=1):
                    record(*result)
        else:
            for task in tasks:
                record(*_song_job(task))
    finally:
        bar.close()


class CachedSplit:
    """Memory-mapped songs of one split of a cache: ``arrays[i]`` is (5, 2, n) (stems..., mixture).

    Raises:
        ConfigError: missing cache or a split with no songs.
    """

    def __init__(self, cache_dir: str | os.PathLike, split: str) -> None:
        self.cache_dir = Path(cache_dir)
        manifest = read_manifest(cache_dir)
        keys = sorted(k for k, v in manifest["songs"].items() if v["split"] == split)
        if not keys:
            raise ConfigError(f"{self.cache_dir}: no cached songs in split {split!r}; check data_root/splits")
        self.names = [k.split("/", 1)[1] for k in keys]
        self.arrays = [
            np.load(self.cache_dir / split / manifest["songs"][k]["file"], mmap_mode="r") for k in keys
        ]
        self.lengths = [int(a.shape[-1]) for a in self.arrays]

    def __len__(self) -> int:
        return len(self.arrays)
