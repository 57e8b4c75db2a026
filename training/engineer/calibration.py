"""Calibrating the engineer to real mixes: compare a profile fitted on wet stems with MUSDB18's.

:func:`compare_profiles` checks, per class, the four tolerances of the calibration (average spectrum within
+/-3 dB from 100 Hz to 10 kHz after level alignment, mean φ within 0.05, onset-peak mean within 1.5 dB,
loudness target within 1.5 LU); :func:`format_compare` prints the table. :func:`write_calibration_corpus`
renders procedural sessions (:mod:`.sessions`) through the engineer into a MUSDB-layout folder, for
calibrating before a built corpus exists; :func:`remix_corpus` re-mixes the dry tracks of a built corpus
(``fxmix data build``) with the current engineer, so tuning the engineer does not re-render the sources.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...dsp.audio import read_audio, write_audio, write_text_atomic
from ...dsp.constants import REFERENCE_PROFILE, SAMPLE_RATE
from ...dsp.profile import Profile
from ..corpus.session import DrySession, DryTrack
from . import mix_session
from .sessions import procedural_session

#: (item, tolerance): spectrum max deviation (dB), mean φ, onset-peak mean (dB), loudness target (LU).
TOLERANCES = {"spectrum_db": 3.0, "phi": 0.05, "onset_peak_mean_db": 1.5, "loudness_lufs": 1.5}
SPECTRUM_RANGE_HZ = (100.0, 10000.0)
#: The reference measured its loudness targets after its panning stage, which first pre-pans every stem
#: 0.7/0.3 (fxnorm-spec.md §1.3): a level change of 10*log10((0.7^2 + 0.3^2) / 2) = -5.37 dB on a centred
#: stem that fxmix's panning stage does not make. Comparing with the reference's published targets adds
#: this back to them, so both sides are loudness after the same (level-neutral) panning.
REFERENCE_PREPAN_LU = float(10 * np.log10((0.7**2 + 0.3**2) / 2))


def compare_profiles(fitted: Profile, reference: Profile, spectra: dict | None = None) -> list[dict]:
    """One row per class and item: fitted value, reference value, deviation, tolerance, pass.

    For the reference's published profile the loudness targets are corrected by REFERENCE_PREPAN_LU.
    ``spectra`` (class -> band dB, e.g. ``linear_mean_spectra`` of the fitted data) replaces the fitted
    profile's spectrum targets in the comparison: the reference's spectra are means of linear magnitudes,
    a profile's are dB means (see training/DATA.md, "Calibration against MUSDB18")."""
    loud_offset = -REFERENCE_PREPAN_LU if reference.name == REFERENCE_PROFILE else 0.0
    rows = []
    for c in reference.classes:
        if c not in fitted.classes:
            continue
        a, r = fitted.targets_for(c), reference.targets_for(c)
        spectrum, how = (
            (spectra[c], "linear mean") if spectra and c in spectra else (a.spectrum_db, "dB mean")
        )
        if spectrum is not None and r.spectrum_db is not None:
            rows.append(_spectrum_row(c, np.asarray(spectrum), r.spectrum_db, fitted.bands_hz, how))
        if a.phi is not None and r.phi is not None:
            va, vr = float(np.mean(a.phi)), float(np.mean(r.phi))
            rows.append(_row(c, "phi", va, vr, abs(va - vr)))
        for key in ("onset_peak_mean_db", "loudness_lufs"):
            va, vr = getattr(a, key), getattr(r, key)
            if va is not None and vr is not None:
                vr += loud_offset if key == "loudness_lufs" else 0.0
                note = (
                    f"reference {loud_offset:+.2f} LU pre-pan correction"
                    if key == "loudness_lufs" and loud_offset
                    else ""
                )
                rows.append(_row(c, key, va, vr, abs(va - vr), note))
    return rows


def _spectrum_row(cls: str, spectrum: np.ndarray, ref: np.ndarray, f: np.ndarray, how: str) -> dict:
    """Worst deviation from 100 Hz to 10 kHz after level alignment (the mean deviation there removed)."""
    sel = (f >= SPECTRUM_RANGE_HZ[0]) & (f <= SPECTRUM_RANGE_HZ[1])
    d = (spectrum - ref)[sel]
    d = d - d.mean()
    k = int(np.argmax(np.abs(d)))
    note = f"worst at {f[sel][k]:.0f} Hz ({d[k]:+.1f} dB), {how}"
    return _row(cls, "spectrum_db", float(abs(d[k])), 0.0, float(abs(d[k])), note=note)


def _row(cls: str, item: str, value: float, ref: float, dev: float, note: str = "") -> dict:
    tol = TOLERANCES[item]
    return {
        "class": cls,
        "item": item,
        "value": round(value, 4),
        "reference": round(ref, 4),
        "deviation": round(dev, 4),
        "tolerance": tol,
        "pass": bool(dev <= tol),
        "note": note,
    }


def format_compare(rows: list[dict], fitted_name: str, reference_name: str) -> str:
    lines = [
        f"profile {fitted_name} vs {reference_name}",
        f"  {'class':<8} {'item':<20} {'value':>9} {'reference':>10} {'deviation':>10} {'tol':>6}  result",
    ]
    for r in rows:
        value = "" if r["item"] == "spectrum_db" else f"{r['value']:.3f}"
        ref = "" if r["item"] == "spectrum_db" else f"{r['reference']:.3f}"
        lines.append(
            f"  {r['class']:<8} {r['item']:<20} {value:>9} {ref:>10} {r['deviation']:>10.3f} "
            f"{r['tolerance']:>6g}  {'pass' if r['pass'] else 'FAIL'} {r['note']}".rstrip()
        )
    n_pass = sum(r["pass"] for r in rows)
    lines.append(f"  {n_pass}/{len(rows)} items within tolerance")
    return "\n".join(lines)


def _render_one(job: tuple) -> str:
    out, index, seed, seconds = job
    session = procedural_session(index, seed, seconds)
    mixed = mix_session(session, np.random.default_rng([seed, index, 1]))
    song = Path(out) / "train" / session.name
    for c, x in mixed.stems.items():
        write_audio(song / f"{c}.flac", x, SAMPLE_RATE)
    write_audio(song / "mixture.flac", mixed.mixture, SAMPLE_RATE)
    meta = {
        "session": session.name,
        "tempo_bpm": session.tempo_bpm,
        "tracks": [
            {
                "name": t.name,
                "cls": t.cls,
                "instrument": t.instrument,
                "role": t.role,
                "source": t.source,
                "licence": t.licence,
            }
            for t in session.tracks
        ],
        "decisions": mixed.decisions,
        "master": mixed.master,
    }
    write_text_atomic(song / "song.json", json.dumps(meta, indent=1) + "\n")
    return session.name


def write_calibration_corpus(
    out: str | Path, songs: int, seconds: float, seed: int, jobs: int = 1, progress: bool = True
) -> list[str]:
    """Render ``songs`` procedural sessions through engineer v2 into ``out/train/<song>/`` (class stems,
    mixture, song.json). Deterministic in ``seed``, independent of ``jobs``."""
    tasks = [(str(out), i, seed, seconds) for i in range(songs)]
    with ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else _Inline() as pool:
        it = pool.map(_render_one, tasks)
        return list(tqdm(it, total=len(tasks), desc="engineer", unit="song", disable=not progress))


class _Inline:
    """``map`` in this process (jobs = 1), with the executor's context-manager shape."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return map(fn, items)


def load_built_session(song: str | Path) -> tuple[dict, DrySession]:
    """(song.json, dry session) of one song folder of a built corpus (dry tracks from ``tracks/``)."""
    song = Path(song)
    meta = json.loads((song / "song.json").read_text(encoding="utf-8"))
    tracks = [
        DryTrack(
            t["name"],
            t["class"],
            t["instrument"],
            read_audio(song / t["dry"]).audio.astype(np.float32),
            t["source"],
            t["licence"],
            t.get("role") or "",
            t.get("composer_level_db"),
            t.get("composer_pan"),
        )
        for t in meta["tracks"]
    ]
    session = DrySession(meta["name"], meta["family"], meta["split"], meta["seed"], meta["tempo_bpm"], tracks)
    return meta, session


def _remix_one(job: tuple[str, str]) -> str:
    song, out = job
    meta, session = load_built_session(song)
    # the build's engineer stream (training/corpus/build.py: default_rng([seed, index, 2]))
    mixed = mix_session(session, np.random.default_rng([meta["seed"], meta["index"], 2]))
    folder = Path(out) / meta["split"] / session.name
    for c, x in mixed.stems.items():
        write_audio(folder / f"{c}.flac", x, SAMPLE_RATE, subtype="PCM_24")
    write_audio(folder / "mixture.flac", mixed.mixture, SAMPLE_RATE, subtype="PCM_24")
    write_text_atomic(folder / "master.json", json.dumps(mixed.master, indent=1, default=float) + "\n")
    return session.name


def remix_corpus(
    src: str | Path, out: str | Path, split: str = "train", jobs: int = 1, progress: bool = True
) -> list[str]:
    """Re-mix every song of ``src/<split>`` (a built corpus) with the current engineer into ``out/<split>``:
    class stems, mixture and the song-level decisions. The same stems a fresh build with this engineer
    writes (same engineer random stream), from the stored dry tracks (24-bit FLAC)."""
    if Path(out).resolve() == Path(src).resolve():
        raise ValueError(f"{out}: remix into a new folder, not into the corpus it reads")
    songs = sorted(p for p in (Path(src) / split).iterdir() if (p / "song.json").is_file())
    tasks = [(str(s), str(out)) for s in songs]
    with ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else _Inline() as pool:
        it = pool.map(_remix_one, tasks)
        return list(tqdm(it, total=len(tasks), desc="remix", unit="song", disable=not progress))
