"""Timeline rendering of a Reaper project, track by track, into class buses.

Rendering (:func:`render_track`, :func:`render_buses`) at 44.1 kHz: item ``i`` covers timeline samples
``round(position * sr)`` up to ``round((position + length) * sr)``; its sample ``j`` is source sample
``round(soffs * sr) + j`` (silence outside the source, wrapped when the item loops). Item gain = item trim x
take volume (negative = phase invert). Pan law: stereo balance, 0 dB at centre, linear -- pan ``p`` in
[-1, 1] scales the left channel by ``min(1, 1 - p)`` and the right by ``min(1, 1 + p)`` (take pan, track pan
and each folder parent's pan in turn; a mono source is duplicated to two channels first). Fades: fade-in
gain ``f(j / n_in)`` over the first ``n_in`` samples, fade-out gain ``f((n - 1 - j) / n_out)`` over the last
``n_out`` samples, ``f`` by shape: 0 linear, 1/3 fast start ``1 - (1 - x)^2``, 2/4 fast end ``x^2``, 5/6
S-curve ``(1 - cos(pi x)) / 2`` (Reaper's curvature parameter is not read). Muted tracks, tracks under a
muted folder and muted items are skipped; when any track is soloed only soloed tracks, their folder
children and solo-defeat tracks play.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from fxmix.dsp.audio import read_audio
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import AudioInputError, ConfigError
from tqdm import tqdm

from .project import Item, Project, Track, audible_tracks, check_media


def balance_gains(pan: float) -> np.ndarray:
    """(2,) linear (left, right) gains of the stereo balance pan law (0 dB at centre)."""
    p = float(np.clip(pan, -1.0, 1.0))
    return np.array([min(1.0, 1.0 - p), min(1.0, 1.0 + p)], dtype=np.float64)


def track_gains(project: Project, index: int) -> np.ndarray:
    """(2,) per-channel gain of a track: its volume, phase and pan, then each folder parent's in turn."""
    g = np.ones(2)
    t: Track | None = project.tracks[index]
    while t is not None:
        g *= t.volume * (-1.0 if t.phase_invert else 1.0) * balance_gains(t.pan)
        t = project.tracks[t.parent] if t.parent is not None else None
    return g


def fade_curve(x: np.ndarray, shape: int) -> np.ndarray:
    """Fade gain for ``x`` in [0, 1] (0 = silent end); see the module docstring for the shapes."""
    x = np.clip(x, 0.0, 1.0)
    if shape in (1, 3):
        return 1.0 - (1.0 - x) ** 2
    if shape in (2, 4):
        return x**2
    if shape in (5, 6):
        return 0.5 - 0.5 * np.cos(np.pi * x)
    return x


def _to_samples(t_s: float, sample_rate: int) -> int:
    return int(round(t_s * sample_rate))


def _apply_chanmode(audio: np.ndarray, chanmode: int) -> np.ndarray:
    if audio.shape[0] == 1:
        return audio
    if chanmode == 1:
        return audio[::-1]
    if chanmode == 2:
        return np.repeat(audio.mean(axis=0, keepdims=True), 2, axis=0)
    if chanmode in (3, 4):
        return np.repeat(audio[chanmode - 3 : chanmode - 2], 2, axis=0)
    return audio


def place_item(
    item: Item,
    source: np.ndarray,
    out: np.ndarray,
    *,
    start_sample: int,
    gains: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Add one item into ``out`` (in place), placed sample-exactly.

    Args:
        item: the item (its fades, offset, volume and pan are applied).
        source: (2, n_src) float32 source audio at ``sample_rate``.
        out: (2, n_out) float32 buffer; its sample 0 is timeline sample ``start_sample``.
        start_sample: timeline sample of ``out[:, 0]``.
        gains: (2,) per-channel gain applied on top of the item's own (track and folder gains).
        sample_rate: Hz.
    """
    n_out = out.shape[1]
    n_src = source.shape[1]
    pos = _to_samples(item.position_s, sample_rate)
    n_item = _to_samples(item.end_s, sample_rate) - pos
    offset = pos - start_sample  # where item sample 0 lands in out
    j0, j1 = max(0, -offset), min(n_item, n_out - offset)
    if j1 <= j0 or n_src == 0:
        return
    soffs = _to_samples(item.soffs_s, sample_rate)
    g = (gains * item.volume * balance_gains(item.pan)).astype(np.float32)[:, None]
    src = _apply_chanmode(source, item.chanmode)
    k0, k1 = soffs + j0, soffs + j1
    if item.loop and (k0 < 0 or k1 > n_src):
        seg = src[:, np.arange(k0, k1) % n_src]
        lo, hi = j0, j1
    else:
        a, b = max(k0, 0), min(k1, n_src)
        if b <= a:
            return
        seg = src[:, a:b]
        lo, hi = a - soffs, b - soffs  # item-sample range actually covered by the source
    n_in = _to_samples(item.fade_in_s, sample_rate)
    n_fo = _to_samples(item.fade_out_s, sample_rate)
    # Fade regions in item samples: [lo, e1) fades in, [e2, hi) fades out, [e1, e2) is plain.
    e1 = min(max(n_in, lo), hi)
    e2 = min(max(n_item - n_fo, lo), hi)
    regions = [(lo, e1, True), (e1, e2, False), (e2, hi, True)] if e1 <= e2 else [(lo, hi, True)]
    for a, b, faded in regions:
        if b <= a:
            continue
        part = seg[:, a - lo : b - lo]
        dst = out[:, offset + a : offset + b]
        if not faded:
            for c in range(2):  # per channel: fast on the transposed (strided) source view
                dst[c] += part[min(c, part.shape[0] - 1)] * g[c, 0]
            continue
        j = np.arange(a, b, dtype=np.float64)
        env = np.ones(b - a, dtype=np.float64)
        if n_in > 0:
            m = j < n_in
            env[m] *= fade_curve(j[m] / n_in, item.fade_in_shape)
        if n_fo > 0:
            m = j >= n_item - n_fo
            env[m] *= fade_curve((n_item - 1 - j[m]) / n_fo, item.fade_out_shape)
        env32 = env.astype(np.float32)
        for c in range(2):
            dst[c] += part[min(c, part.shape[0] - 1)] * g[c, 0] * env32


def load_source(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(channels, n) float32 at ``sample_rate``; 1 or 2 channels (mono broadcasts when placed).

    Fast path: a file already at the rate is used as read (a transposed view, no copy, no NaN scan; the
    buses are checked once at the end). Anything else goes through ``read_audio`` (resampling, checks).
    """
    audio = None
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        if rate == sample_rate and data.shape[1] in (1, 2) and data.shape[0] > 0:
            audio = data.T
    except Exception:  # unreadable here: read_audio below raises the typed, explained error
        audio = None
    return read_audio(path, sample_rate).audio if audio is None else audio


def _track_paths(track: Track) -> list[Path]:
    return list(dict.fromkeys(it.path for it in track.items if it.renderable and it.path is not None))


#: The longest render window: the class buses are held in memory (4 buses x 1 h is about 2.5 GB).
MAX_RENDER_S = 3600.0


def window_samples(
    project: Project, start_s: float = 0.0, end_s: float | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[int, int]:
    """(start sample, number of samples) of the render window; ``end_s`` None = end of the last item.

    Raises:
        ConfigError: negative start, or an end not after the start.
    """
    if start_s < 0:
        raise ConfigError(f"--start {start_s:g}: must be >= 0 seconds")
    end = project.length_s if end_s is None else end_s
    start_n, end_n = _to_samples(start_s, sample_rate), _to_samples(end, sample_rate)
    if end_n <= start_n:
        raise ConfigError(
            f"render window {start_s:g}..{end:g} s is empty (project ends at {project.length_s:.3f} s); "
            "give --end after --start"
        )
    if end - start_s > MAX_RENDER_S:
        raise ConfigError(
            f"render window {start_s:g}..{end:g} s is longer than {MAX_RENDER_S / 3600:g} h (the project's last item "
            f"ends at {project.length_s:.0f} s); render a part with --start/--end"
        )
    return start_n, end_n - start_n


def _render_into(
    project: Project,
    index: int,
    out: np.ndarray,
    start_n: int,
    sources: Mapping[Path, np.ndarray],
    sample_rate: int,
) -> None:
    gains = track_gains(project, index)
    for item in project.tracks[index].items:
        if item.renderable and item.path is not None:
            place_item(
                item, sources[item.path], out, start_sample=start_n, gains=gains, sample_rate=sample_rate
            )


def render_track(
    project: Project,
    index: int,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Render one track's own items (not its folder children) with track and folder gains applied.

    Mute and solo are not looked at here (see :func:`audible_tracks`); muted and skipped items are.

    Args:
        project: the project.
        index: track index.
        start_s, end_s: render window (seconds); ``end_s`` None = end of the project.
        sample_rate: Hz (sources are resampled to it).

    Returns:
        (2, n) float32 timeline of the window.

    Raises:
        AudioInputError: a media file is missing or unreadable.
    """
    start_n, n = window_samples(project, start_s, end_s, sample_rate)
    out = np.zeros((2, n), dtype=np.float32)
    track = project.tracks[index]
    missing = [str(p) for p in _track_paths(track) if not p.exists()]
    if missing:
        raise AudioInputError(f"track {track.name!r}: media not found: {', '.join(missing)}")
    sources = {p: load_source(p, sample_rate) for p in _track_paths(track)}
    _render_into(project, index, out, start_n, sources, sample_rate)
    if not np.isfinite(out).all():
        raise AudioInputError(
            f"track {project.tracks[index].name!r}: NaN/inf samples in its media; repair them"
        )
    return out


def render_buses(
    project: Project,
    classes: Sequence[str],
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Render every audible track into its class bus.

    Args:
        project: the project (call :func:`check_media` first for one error listing all missing files).
        classes: one class per track (see ``track_classes.assign_classes``).
        start_s, end_s: render window (seconds); ``end_s`` None = end of the project.
        sample_rate: Hz.
        progress: show a tqdm bar over tracks.

    Returns:
        {class: (2, n) float32}, only for classes that have at least one audible track with items.
    """
    if len(classes) != len(project.tracks):
        raise ConfigError(f"render_buses: {len(classes)} classes for {len(project.tracks)} tracks")
    check_media(project)
    start_n, n = window_samples(project, start_s, end_s, sample_rate)
    buses: dict[str, np.ndarray] = {}
    for track, sources in _track_sources(project, sample_rate, progress):
        bus = buses.setdefault(classes[track.index], np.zeros((2, n), dtype=np.float32))
        _render_into(project, track.index, bus, start_n, sources, sample_rate)
    for name, bus in buses.items():
        if not np.isfinite(bus).all():
            bad = [
                str(p)
                for p in project.media_paths()
                if p.exists() and not np.isfinite(sf.read(str(p), dtype="float32")[0]).all()
            ]
            raise AudioInputError(
                f"{project.path}: the {name} bus has NaN/inf samples (from {', '.join(bad) or 'an item'}); "
                "repair or re-export those files"
            )
    return buses


def _track_sources(project: Project, sample_rate: int, progress: bool):
    """Yield ``(track, {path: audio})`` for every audible track with items, in order; the files of the next
    track load in a worker thread (libsndfile releases the GIL) while the caller places this one."""
    audible = audible_tracks(project)
    todo = [t for t in project.tracks if audible[t.index] and any(it.renderable for it in t.items)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: dict[Path, Future] = {}

        def prefetch(k: int) -> None:
            if k < len(todo):
                for p in _track_paths(todo[k]):
                    if p not in pending:
                        pending[p] = pool.submit(load_source, p, sample_rate)

        prefetch(0)
        for k, track in enumerate(tqdm(todo, desc="render tracks", unit="track", disable=not progress)):
            prefetch(k + 1)
            yield track, {p: pending[p].result() for p in _track_paths(track)}
            keep = set(_track_paths(todo[k + 1])) if k + 1 < len(todo) else set()
            for p in [p for p in pending if p not in keep]:
                del pending[p]


def render_tracks(
    project: Project,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Render every audible track with items on its own (track and folder gains applied, as in
    :func:`render_buses`): ``{track index: (2, n) float32}`` for a track-level mixer."""
    check_media(project)
    start_n, n = window_samples(project, start_s, end_s, sample_rate)
    out: dict[int, np.ndarray] = {}
    for track, sources in _track_sources(project, sample_rate, progress):
        audio = np.zeros((2, n), dtype=np.float32)
        _render_into(project, track.index, audio, start_n, sources, sample_rate)
        if not np.isfinite(audio).all():
            raise AudioInputError(f"track {track.name!r}: NaN/inf samples in its media; repair or re-export them")
        out[track.index] = audio
    return out
