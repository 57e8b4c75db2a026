"""Evaluation harness: mixing models and baselines against the target (wet) mixture, per song, per family and
overall (means and medians).

Inputs per song (:mod:`.eval_songs`): the dry class stems of a session corpus (the sum of each class's dry
tracks) or of a synthetic corpus (``<song>/dry/``), what ``fxmix mix`` sees in practice; else the wet stems
(``input_source``). Methods:

* ``sum``: plain sum of the input stems;
* ``equal_loudness_sum``: each input stem gained to ``LN_LUFS``, then summed;
* ``normalized_sum``: the stems effect-normalized with ``profile`` (:func:`fxmix.dsp.chain.normalize_stems`), summed;
* ``mean_engineer`` (session songs): the engineer's class-mean decisions without its content rules
  (:func:`fxmix.training.engineer.mean_engineer_decisions`) rendered from the dry tracks
  (:func:`fxmix.training.engineer.render_decisions`);
* each model: the network applied to the normalized stems (chunked runtime, :func:`load_runtime`);
* a console mixer (arch ``console``, :mod:`fxmix.model.console_runtime`): every dry track (every input stem
  of a song without tracks) effect-normalized to its class target with the profile the mixer was trained with,
  then the mixer's decisions rendered by the pedalboard console and mastered, as ``fxmix mix --model console``
  does; with ``no_master`` also the same sum without the master stage (method ``NAME`` + :data:`NO_MASTER`),
  so the figures before and after the master come from one set of decisions on the same split.

Metrics and their bounds: :mod:`.eval_metrics`. Balances (:mod:`.eval_balance`): the class balance of the
target is measured on its wet stems, of the sums and the mean engineer on the stems they summed, of a model by
least squares on the normalized stems it was given; the track balance of every mix (the target included) by
least squares on the song's dry tracks, so a method that reproduces the target scores 0.

Songs are evaluated in parallel worker processes (``jobs``); the normalized stems can be cached between runs
(``cache``, :class:`fxmix.training.eval_songs.StemCache`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..dsp.audio import db_to_gain
from ..dsp.chain import DEFAULT_STAGES, check_stages
from ..dsp.constants import CLASSES, SAMPLE_RATE
from ..dsp.errors import ConfigError
from ..dsp.profile import load_profile
from ..dsp.stages.master import default_plan, master
from ..model.automix import automix_tracks
from ..model.console_runtime import MixerRunner
from ..model.names import training_profile
from ..model.runtime import load_runtime, resolve_model_path
from ..model.states import read_sidecar
from .data import MultitrackDataset
from .engineer import mean_engineer_decisions, render_decisions
from .eval_balance import Contributions, balance_error_lu, estimate_contributions, exact_balance_lu
from .eval_metrics import BOUNDS, LN_LUFS, METRICS, Reference, loudness, out_of_bounds, signal_metrics
from .eval_report import format_table, plot_song, results, write_json
from .eval_songs import EvalSong, StemCache, load_eval_song, normalized_inputs
from .listening.stimuli import check_save_dir, save_song_audio
from .preprocess import CacheSpec, profile_sha256

log = logging.getLogger(__name__)

BASELINES = ("sum", "equal_loudness_sum", "normalized_sum", "mean_engineer")
#: suffix of a console mixer's method evaluated without its master stage
NO_MASTER = ":no-master"
#: Kept for callers of the time-domain estimate (plots, tests); balances use :mod:`.eval_balance`.
__all__ = [
    "BASELINES", "BOUNDS", "METRICS", "estimate_contributions", "evaluate", "format_table", "write_json",
]


def _gain_to(x: np.ndarray, lufs: float) -> np.ndarray:
    cur = loudness(x)
    return x if not np.any(x) else (x * db_to_gain(lufs - cur)).astype(np.float32)


class _Context:
    """What every song's evaluation needs (built once per worker process)."""

    def __init__(self, models, profile, stages, cache, split, plot_dir, save_audio, input_source, no_master,
                 threads):
        if threads:
            torch.set_num_threads(threads)
        self.prof = load_profile(profile)
        self.runtimes = {name: _load_model(path) for name, path in models}
        self.track_profiles = {name: load_profile(training_profile(path)) for name, path in models
                               if isinstance(self.runtimes[name], MixerRunner)}
        self.stages, self.split, self.input_source = stages, split, input_source
        self.cache = StemCache(cache, _spec(self.prof, stages, input_source))
        self.plot_dir, self.save_audio, self.no_master = plot_dir, save_audio, no_master


def _load_model(path: str):
    """A console mixer (:class:`MixerRunner`) or a waveform network's chunked runtime."""
    return MixerRunner(path) if read_sidecar(path).get("arch") == "console" else load_runtime(path)


def _console_mix(song: EvalSong, runner: MixerRunner, prof, *, master_stage: bool = True) -> np.ndarray:
    """The console mixer's mix of the song's dry tracks (its input stems when it has none), each track
    effect-normalized to its class target first, as ``fxmix mix --model console`` does (``master_stage``:
    through the master stage, else the console's bare sum)."""
    parts = [(t.name, t.cls, t.audio) for t in song.tracks] or [
        (c, c, x) for c, x in song.inputs.items() if np.any(x)]
    return automix_tracks(parts, model=runner, profile=prof, master=master_stage).mix


def _console_mixes(song: EvalSong, runner: MixerRunner, prof, no_master: bool) -> tuple[np.ndarray, ...]:
    """(mastered mix,) or, with ``no_master``, (mastered mix, bare sum): one normalization and one decision,
    the bare sum mastered as :func:`fxmix.model.console_runtime.mix_tracks` masters it (a silent sum stays
    silent)."""
    if not no_master:
        return (_console_mix(song, runner, prof),)
    bare = _console_mix(song, runner, prof, master_stage=False)
    return (master(bare, default_plan(), SAMPLE_RATE) if np.any(bare) else bare), bare


def _spec(prof, stages, input_source) -> CacheSpec:
    return CacheSpec(profile_sha256(prof), tuple(stages), input_source, "float32", 0)


_CTX: _Context | None = None


def _init_worker(*args) -> None:
    global _CTX
    _CTX = _Context(*args)


def _song_mixes(song: EvalSong, normalized: dict[str, np.ndarray], ctx: _Context) -> dict:
    """name -> (mix, class parts known exactly or None, regressors of the class balance or None)."""
    inputs = {c: x for c, x in song.inputs.items() if np.any(x)}
    equal = {c: _gain_to(x, LN_LUFS) for c, x in inputs.items()}
    live_norm = {c: x for c, x in normalized.items() if np.any(x)}

    def total(parts: dict) -> np.ndarray:
        return np.sum(list(parts.values()), axis=0) if parts else np.zeros((2, song.n), np.float32)

    mixes = {
        "sum": (total(inputs), inputs, None),
        "equal_loudness_sum": (total(equal), equal, None),
        "normalized_sum": (total(live_norm), live_norm, None),
    }
    if song.tracks:
        session = song.session()
        mixed = render_decisions(session, mean_engineer_decisions(session))
        mixes["mean_engineer"] = (mixed.mixture, {c: x for c, x in mixed.stems.items() if np.any(x)}, None)
    stack = np.stack([normalized[c] for c in CLASSES])
    for name, rt in ctx.runtimes.items():
        if isinstance(rt, MixerRunner):
            both = _console_mixes(song, rt, ctx.track_profiles[name], ctx.no_master)
            mixes[name] = (both[0], None, normalized)
            if len(both) > 1:
                mixes[name + NO_MASTER] = (both[1], None, normalized)
        else:
            mixes[name] = (rt.mix(stack), None, normalized)
    return mixes


def _balances(song: EvalSong, mixes: dict) -> tuple[dict, dict, dict, dict]:
    """(target class balance, target track balance, method -> class balance, method -> track balance)."""
    target_cls = exact_balance_lu({c: x for c, x in song.wet_stems.items() if np.any(x)})
    cls_bal = {name: exact_balance_lu(parts) for name, (_, parts, _) in mixes.items() if parts is not None}
    models = [name for name, (_, parts, _) in mixes.items() if parts is None]
    if models:
        est = Contributions(mixes[models[0]][2]).balances([mixes[m][0] for m in models])
        cls_bal.update(zip(models, est))
    track_bal, target_tracks = {}, {}
    if song.tracks:
        names = list(mixes)
        est = Contributions({t.name: t.audio for t in song.tracks}).balances(
            [song.target] + [mixes[m][0] for m in names]
        )
        target_tracks, track_bal = est[0], dict(zip(names, est[1:]))
    return target_cls, target_tracks, cls_bal, track_bal


def evaluate_song(path: str | os.PathLike, ctx: _Context | None = None) -> tuple[dict, dict | None]:
    """One song's row of the results (and the stem cache entry to record, or None)."""
    ctx = ctx or _CTX
    t0 = time.process_time()
    song = load_eval_song(path, ctx.input_source)
    normalized, entry = normalized_inputs(song, ctx.prof, ctx.stages, ctx.cache, ctx.split)
    mixes = _song_mixes(song, normalized, ctx)
    ref = Reference.of(song.target)
    target_cls, target_tracks, cls_bal, track_bal = _balances(song, mixes)
    methods = {}
    for name, (y, _, _) in mixes.items():
        m = signal_metrics(y, ref)
        m["level_balance_err_lu"] = balance_error_lu(cls_bal[name], target_cls)
        m["track_balance_err_lu"] = balance_error_lu(track_bal.get(name, {}), target_tracks)
        m["balance"] = {c: round(v, 3) for c, v in cls_bal[name].items()}
        if song.tracks:
            m["track_balance"] = {t: round(v, 3) for t, v in track_bal[name].items()}
        bad = out_of_bounds(m)
        if bad:
            log.warning("%s: %s exceed their bounds %s", song.name, name, {k: m[k] for k in bad})
        methods[name] = m
    row = {
        "song": song.name,
        "family": song.family,
        "inputs": song.input_kind,
        "n_tracks": len(song.tracks),
        "target_balance": target_cls,
        "target_track_balance": target_tracks,
        "methods": methods,
    }
    row["cpu_s"] = round(time.process_time() - t0, 2)  # this song's evaluation, in its worker
    if ctx.save_audio is not None:
        save_song_audio(Path(ctx.save_audio) / song.name, song.name, song.target,
                        {name: y for name, (y, _, _) in mixes.items()}, song.wet_stems, SAMPLE_RATE)
    if ctx.plot_dir is not None:
        plot_song(Path(ctx.plot_dir) / f"{song.name}.png", song.target, target_cls,
                  {name: y for name, (y, _, _) in mixes.items()}, cls_bal)
    return row, entry


def evaluate(
    root: str | os.PathLike,
    split: str = "test",
    *,
    models: Sequence[str] = (),
    profile: str = "synthetic-v1",
    input_source: str = "auto",
    stages: Sequence[str] = DEFAULT_STAGES,
    max_songs: int | None = None,
    plot_dir: str | os.PathLike | None = None,
    save_audio: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    jobs: int | None = None,
    progress: bool = True,
    no_master: bool = False,
) -> dict:
    """Evaluate baselines and ``models`` on ``root``'s ``split``. Returns the JSON-ready results.

    Args:
        root: MUSDB18-layout dataset root (a session corpus, a synthetic corpus or MUSDB18).
        split: train | valid | test.
        models: model folders / weights files, or ``default``/``offline``/``causal`` (packaged models).
        profile: normalization profile (use the one the models were trained with).
        input_source: "auto" (dry when the song has dry tracks or ``dry/``, else wet), "dry" or "wet".
        stages: normalization stages.
        max_songs: evaluate only the first N songs.
        plot_dir: write a spectra + level-bars PNG per song here.
        save_audio: keep every method's mix, the target and the stems per song here (the listening-test layout,
            :mod:`fxmix.training.listening.stimuli`).
        cache: keep the normalized stems here between runs (training-cache layout).
        jobs: songs evaluated in parallel processes (default: CPU count, at most 4 and the number of songs).
        progress: tqdm bar.
        no_master: also evaluate each console mixer without its master stage (method ``NAME:no-master``),
            from the same decisions as its mastered mix.

    Raises:
        ConfigError: no songs in the split, unknown input_source, a model that cannot be loaded.
    """
    if input_source not in ("auto", "dry", "wet"):
        raise ConfigError(f"input_source {input_source!r}: use auto, dry or wet")
    stages = check_stages(stages)
    ds = MultitrackDataset(root, split)
    if len(ds) == 0:
        raise ConfigError(f"{root}: no songs in split {split!r}")
    if save_audio is not None:
        check_save_dir(save_audio, root)
    paths = ds.songs[: len(ds) if max_songs is None else max_songs]
    named = tuple((m, str(resolve_model_path(m, where="--models"))) for m in models)  # a bad name fails here
    jobs = min(jobs or min(os.cpu_count() or 1, 4), len(paths))
    args = (named, profile, stages, cache, split, plot_dir, save_audio, input_source, no_master)
    ctx = _Context(*args, 0) if jobs <= 1 else None  # loads the models here: a bad one fails before any work
    rows = []
    bar = tqdm(total=len(paths), desc="eval", unit="song", disable=not progress)
    if ctx is not None:
        for p in paths:
            rows.append(_record(ctx.cache, split, *evaluate_song(p, ctx)))
            bar.update(1)
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(*args, threads)) as pool:
            cache_w = StemCache(cache, _spec(load_profile(profile), stages, input_source))
            for row, entry in pool.map(evaluate_song, paths):
                rows.append(_record(cache_w, split, row, entry))
                bar.update(1)
    bar.close()
    return results(root, split, profile, rows)


def _record(cache: StemCache, split: str, row: dict, entry: dict | None) -> dict:
    cache.record(split, row["song"], entry)
    return row
