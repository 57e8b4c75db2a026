"""Dataset statistics: per split and class loudness, spectral centroid and crest factor (``fxmix data stats``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..dsp.constants import CLASSES
from ..dsp.errors import AudioInputError
from .data import MultitrackDataset, crest_factor_db, spectral_centroid_hz
from .synth import _meter
from .synth_chains import loudness_lufs

#: The statistics measured per class (and for the mixture).
FEATURES = ("lufs", "centroid_hz", "crest_db")


def corpus_sources(root: Path) -> str:
    """The sources and families a corpus was made from (its ``corpus.json``), as one line."""
    meta = root / "corpus.json"
    if meta.exists():
        try:
            d = json.loads(meta.read_text(encoding="utf-8"))
            fams = d.get("families", {})
            if isinstance(fams, list):  # session corpus (fxmix data build): family names and counts
                counts = d.get("family_counts", {})
                return "session corpus (families " + ", ".join(f"{f} x{counts.get(f, '?')}" for f in fams) + ")"
            fams = "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in fams.items())
            return f"{', '.join(d.get('sources_used', []))} (families {fams})"
        except (json.JSONDecodeError, OSError):
            pass
    return "unknown (no corpus.json: not made by fxmix data synth)"


def song_source(song_path: Path) -> str | None:
    """``source/family`` of a synthetic song (its ``params.json``), or None."""
    p = song_path / "params.json" if song_path.is_dir() else None
    if p is None or not p.exists():
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    return f"{d.get('source', '?')}/{d.get('family', '?')}"


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, min, max and count of the finite values (NaN and 0 when there are none)."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}


def split_stats(
    ds: MultitrackDataset,
    max_songs: int = 0,
    on_skip: Callable[[Path, AudioInputError], None] | None = None,
) -> dict:
    """Statistics of the first ``max_songs`` songs of a split (all when <= 0).

    Returns ``{"n_songs", "sources": {source/family: count}, "classes": {class: {feature: summary}}}`` with
    the classes in ``CLASSES`` order plus ``mixture``. A song whose audio cannot be read is passed to
    ``on_skip(path, error)`` and left out.
    """
    n_max = len(ds) if max_songs <= 0 else min(len(ds), max_songs)
    meter = _meter(ds.sample_rate)
    rows: dict[str, dict[str, list[float]]] = {k: {f: [] for f in FEATURES} for k in (*CLASSES, "mixture")}
    fams: dict[str, int] = {}
    for i in tqdm(range(n_max), desc=f"stats {ds.split}", unit="song", leave=False):
        try:
            song = ds[i]
        except AudioInputError as exc:  # an unreadable song is reported, not fatal
            if on_skip is not None:
                on_skip(ds.songs[i], exc)
            continue
        src = song_source(song.path)
        if src:
            fams[src] = fams.get(src, 0) + 1
        for k, x in (*song.stems.items(), ("mixture", song.mixture)):
            if not np.any(x):
                continue
            rows[k]["lufs"].append(loudness_lufs(meter, x))
            rows[k]["centroid_hz"].append(spectral_centroid_hz(x, song.sample_rate))
            rows[k]["crest_db"].append(crest_factor_db(x))
    classes = {k: {f: summarize(v) for f, v in feats.items()} for k, feats in rows.items()}
    return {"n_songs": n_max, "sources": fams, "classes": classes}
