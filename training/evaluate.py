"""Evaluation harness: mixing models and baselines against the target (wet) mixture, per song and on average.

Inputs per song: the dry stems of a synthetic corpus (``<song>/dry/``, what ``fxmix mix`` sees in practice) when
present, else the wet stems (``input_source``). Methods:

* ``sum``: plain sum of the input stems;
* ``equal_loudness_sum``: each input stem gained to ``EQUAL_LOUDNESS_LUFS``, then summed;
* ``normalized_sum``: the stems effect-normalized with ``profile`` (:func:`fxmix.dsp.chain.normalize_stems`), summed;
* each model: the network applied to the same normalized stems (chunked runtime, :func:`load_runtime`).

Metrics (lower is better except none; "LN" = both signals loudness-normalized first, so a method is not judged
on its overall level, which is reported separately):

* ``loudness_err_lu``: |LUFS(method) - LUFS(target)| (absolute loudness, BS.1770);
* ``spectral_err_db``: mean |difference| of the loudness-referenced 1/6-octave band spectra (dB);
* ``panning_err``: mean |difference| of the per-band stereo similarity φ (0..1) (panning/width);
* ``dynamics_err_db``: |difference| of crest factors (peak/RMS, dB);
* ``mrstft``: LN multi-resolution sum/difference STFT distance (:class:`MultiResolutionSumDiffLoss`, SC + log-mag);
* ``level_balance_err_lu``: mean over classes of |Δ| of each class's loudness relative to the sum of all classes.
  Target: the wet stems. Sums: the stems as summed. Models: each class's contribution is estimated from the
  stems by per-band least-squares gains (:func:`estimate_contributions`), then measured the same way.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.signal
import torch
from tqdm import tqdm

from ..dsp.audio import db_to_gain, read_audio, write_text_atomic
from ..dsp.bands import band_centers_hz
from ..dsp.chain import DEFAULT_STAGES, normalize_stems
from ..dsp.constants import CLASSES, SAMPLE_RATE
from ..dsp.errors import ConfigError
from ..dsp.features import integrated_loudness, measure_phi, measure_spectrum
from ..dsp.profile import load_profile
from ..model.losses import CONTRIB_N_FFT, MultiResolutionSumDiffLoss, band_ls_gains, contribution_bands
from ..model.runtime import load_runtime, resolve_model_path
from .data import MultitrackDataset, crest_factor_db
from .listening.stimuli import check_save_dir, save_song_audio

log = logging.getLogger(__name__)

BASELINES = ("sum", "equal_loudness_sum", "normalized_sum")
METRICS = (
    "mrstft",
    "spectral_err_db",
    "panning_err",
    "dynamics_err_db",
    "level_balance_err_lu",
    "loudness_err_lu",
)
#: Level every stem is set to by the equal-loudness baseline, and the level of LN comparisons (LUFS).
EQUAL_LOUDNESS_LUFS = -23.0


def _gain_to(x: np.ndarray, lufs: float) -> np.ndarray:
    cur = integrated_loudness(x, SAMPLE_RATE)
    return x if not np.isfinite(cur) else (x * db_to_gain(lufs - cur)).astype(np.float32)


def class_balance_lu(contributions: dict[str, np.ndarray]) -> dict[str, float]:
    """Each non-silent class's loudness relative to the loudness of the sum of all contributions (LU)."""
    total = integrated_loudness(np.sum(list(contributions.values()), axis=0), SAMPLE_RATE)
    out = {}
    for c, x in contributions.items():
        v = integrated_loudness(x, SAMPLE_RATE)
        if np.isfinite(v) and np.isfinite(total):
            out[c] = v - total
    return out


def estimate_contributions(mix: np.ndarray, stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each class's contribution to ``mix``: per-band complex least-squares gains on the stems.

    In each 1/3-octave band of a 4096-point STFT, one complex gain per class ``G_c`` is fitted over all bins,
    frames and both channels so that ``MIX ≈ Σ_c G_c · STEM_c`` (:func:`fxmix.model.losses.band_ls_gains`, the
    same estimate the training's class-balance loss uses); the contribution of class c is the inverse STFT of
    ``G_c · STEM_c``. A single broadband gain per class only captures the part of the processed stem that is
    still correlated with the unprocessed one (``|g|² ‖s‖² ≤ ‖H s‖²``), so it systematically under-reads classes the
    network equalizes. Per-band gains follow any smooth EQ and reduce to the broadband gain for pure gains
    (tests/training/test_eval.py measures both estimators on stems with known per-class EQ and gain).

    Args:
        mix: (2, n) the method's mix.
        stems: class -> (2, n) the stems the method was given.

    Returns:
        class -> (2, n) float32 estimated contribution, for the non-silent classes.
    """
    names = [c for c, x in stems.items() if np.any(x)]
    if not names:
        return {}
    n = mix.shape[-1]
    kw = dict(fs=SAMPLE_RATE, nperseg=CONTRIB_N_FFT, noverlap=CONTRIB_N_FFT * 3 // 4, window="hann")
    if n < CONTRIB_N_FFT:  # too short for bands: one broadband real gain per class
        a = np.stack([stems[c].reshape(-1) for c in names], axis=1).astype(np.float64)
        g, *_ = np.linalg.lstsq(a, mix.reshape(-1).astype(np.float64), rcond=None)
        return {c: (g[i] * stems[c]).astype(np.float32) for i, c in enumerate(names)}
    _, _, m_spec = scipy.signal.stft(mix.astype(np.float32), **kw)  # (2, bins, frames)
    s_spec = np.stack([scipy.signal.stft(stems[c].astype(np.float32), **kw)[2] for c in names])
    bands = contribution_bands(CONTRIB_N_FFT, SAMPLE_RATE)
    band_gains = band_ls_gains(
        torch.from_numpy(m_spec.astype(np.complex128)), torch.from_numpy(s_spec.astype(np.complex128)), bands
    )  # (classes, bands)
    gains = band_gains[:, bands].numpy().astype(np.complex64)  # (classes, bins)
    out = {}
    for i, c in enumerate(names):
        _, y = scipy.signal.istft(gains[i][None, :, None] * s_spec[i], **kw)
        out[c] = y[:, :n].astype(np.float32)
    return out


def _mrstft(pred: np.ndarray, target: np.ndarray, loss) -> float:
    p = torch.from_numpy(_gain_to(pred, EQUAL_LOUDNESS_LUFS))[None]
    t = torch.from_numpy(_gain_to(target, EQUAL_LOUDNESS_LUFS))[None]
    with torch.no_grad():
        return float(loss(p, t))


def song_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    contributions: dict[str, np.ndarray],
    target_balance: dict[str, float],
    loss,
) -> dict[str, float]:
    """All :data:`METRICS` of one method's (2, n) mix against the (2, n) target."""
    lp, lt = integrated_loudness(pred, SAMPLE_RATE), integrated_loudness(target, SAMPLE_RATE)
    bal = class_balance_lu(contributions)
    common = [c for c in target_balance if c in bal]
    return {
        "mrstft": _mrstft(pred, target, loss),
        "spectral_err_db": float(
            np.mean(
                np.abs(measure_spectrum(pred, SAMPLE_RATE, lp) - measure_spectrum(target, SAMPLE_RATE, lt))
            )
        ),
        "panning_err": float(
            np.mean(np.abs(measure_phi(pred, SAMPLE_RATE) - measure_phi(target, SAMPLE_RATE)))
        ),
        "dynamics_err_db": abs(crest_factor_db(pred) - crest_factor_db(target)),
        "level_balance_err_lu": float(np.mean([abs(bal[c] - target_balance[c]) for c in common]))
        if common
        else float("nan"),
        "loudness_err_lu": abs(lp - lt) if np.isfinite(lp) and np.isfinite(lt) else float("nan"),
        "balance": {c: round(v, 3) for c, v in bal.items()},
    }


def _dry_stems(song_path: Path, n: int) -> dict[str, np.ndarray] | None:
    dry = song_path / "dry"
    if not dry.is_dir():
        return None
    out = {}
    for c in CLASSES:
        f = next((dry / f"{c}{e}" for e in (".flac", ".wav") if (dry / f"{c}{e}").is_file()), None)
        x = read_audio(f).audio if f is not None else np.zeros((2, n), np.float32)
        out[c] = x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return out


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
    progress: bool = True,
) -> dict:
    """Evaluate baselines and ``models`` on ``root``'s ``split``. Returns the JSON-ready results.

    Args:
        root: MUSDB18-layout dataset root.
        split: train | valid | test.
        models: model folders / weights files, or ``default``/``offline``/``causal`` (packaged models).
        profile: normalization profile (use the one the models were trained with).
        input_source: "auto" (dry stems when the song has ``dry/``, else wet), "dry" or "wet".
        stages: normalization stages.
        max_songs: evaluate only the first N songs.
        plot_dir: write a spectra + level-bars PNG per song here.
        save_audio: keep every method's mix, the target and the stems per song here (the listening-test layout,
            :mod:`fxmix.training.listening.stimuli`).
        progress: tqdm bar.

    Raises:
        ConfigError: no songs in the split, unknown input_source, a model that cannot be loaded.
    """
    if input_source not in ("auto", "dry", "wet"):
        raise ConfigError(f"input_source {input_source!r}: use auto, dry or wet")
    ds = MultitrackDataset(root, split)
    if len(ds) == 0:
        raise ConfigError(f"{root}: no songs in split {split!r}")
    if save_audio is not None:
        check_save_dir(save_audio, root)
    prof = load_profile(profile)
    runtimes = {m: load_runtime(resolve_model_path(m, where="--models")) for m in models}
    loss = MultiResolutionSumDiffLoss()
    n_songs = len(ds) if max_songs is None else min(len(ds), max_songs)
    songs_out = []
    for i in tqdm(range(n_songs), desc="eval", unit="song", disable=not progress):
        song = ds[i]
        n = song.mixture.shape[1]
        dry = _dry_stems(song.path, n) if input_source != "wet" else None
        if input_source == "dry" and dry is None:
            raise ConfigError(f"{song.path}: input_source 'dry' but the song has no dry/ folder")
        inputs = dry if dry is not None else song.stems
        target_balance = class_balance_lu({c: x for c, x in song.stems.items() if np.any(x)})
        mixes = _song_mixes(inputs, runtimes, prof, stages)
        row = {
            "song": song.name,
            "inputs": "dry" if dry is not None else "wet",
            "target_balance": target_balance,
        }
        row["methods"] = {
            name: song_metrics(y, song.mixture, contrib, target_balance, loss)
            for name, (y, contrib) in mixes.items()
        }
        songs_out.append(row)
        if save_audio is not None:
            mix_audio = {name: y for name, (y, _) in mixes.items()}
            folder = Path(save_audio) / song.name
            save_song_audio(folder, song.name, song.mixture, mix_audio, song.stems, SAMPLE_RATE)
        if plot_dir is not None:
            plot_song(Path(plot_dir) / f"{song.name}.png", song.mixture, target_balance, mixes)
    return _results(root, split, profile, songs_out)


def _song_mixes(
    inputs: dict[str, np.ndarray], runtimes: dict, prof, stages: Sequence[str]
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Each method's (2, n) mix of one song's input stems, with the per-class contributions it is made of."""
    normalized = {
        c: r.audio for c, r in normalize_stems(inputs, SAMPLE_RATE, prof, stages=stages, seed=0).items()
    }
    equal = {c: _gain_to(x, EQUAL_LOUDNESS_LUFS) for c, x in inputs.items() if np.any(x)}
    mixes: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {
        "sum": (np.sum(list(inputs.values()), axis=0), {c: x for c, x in inputs.items() if np.any(x)}),
        "equal_loudness_sum": (np.sum(list(equal.values()), axis=0), equal),
        "normalized_sum": (
            np.sum(list(normalized.values()), axis=0),
            {c: x for c, x in normalized.items() if np.any(x)},
        ),
    }
    stack = np.stack([normalized[c] for c in CLASSES])
    for name, rt in runtimes.items():
        y = rt.mix(stack)
        mixes[name] = (y, estimate_contributions(y, {c: normalized[c] for c in CLASSES}))
    return mixes


def _results(root: str | os.PathLike, split: str, profile: str, songs_out: list[dict]) -> dict:
    """The JSON-ready results: per-song rows and the mean of each metric per method."""
    methods = list(songs_out[0]["methods"])
    mean = {
        m: {k: float(np.nanmean([s["methods"][m][k] for s in songs_out])) for k in METRICS} for m in methods
    }
    return {
        "dataset": str(Path(root)),
        "split": split,
        "profile": profile,
        "n_songs": len(songs_out),
        "methods": methods,
        "metrics": list(METRICS),
        "mean": mean,
        "songs": songs_out,
    }


def format_table(results: dict) -> str:
    """Plain-text table of the per-method means (one row per method)."""
    cols = list(results["metrics"])
    head = f"{'method':<28}" + "".join(f"{c:>22}" for c in cols)
    lines = [f"{results['split']} split, {results['n_songs']} songs, profile {results['profile']}", head]
    for m in results["methods"]:
        lines.append(
            f"{'/'.join(Path(m).parts[-2:]) if os.sep in m else m:<28}"
            + "".join(f"{results['mean'][m][c]:>22.4f}" for c in cols)
        )
    return "\n".join(lines)


def write_json(path: str | os.PathLike, results: dict) -> Path:
    return write_text_atomic(path, json.dumps(results, indent=1, default=float) + "\n")


def plot_song(path: Path, target: np.ndarray, target_balance: dict[str, float], mixes: dict) -> None:
    """Long-term spectra (loudness-referenced) and class level bars of each method vs the target."""
    import matplotlib  # optional dependency (the "plot" extra), needed only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    f = band_centers_hz()
    ax1.semilogx(f, measure_spectrum(target, SAMPLE_RATE), "k", lw=2, label="target")
    names = list(mixes)
    width = 0.8 / (len(names) + 1)
    classes = list(target_balance)
    ax2.bar(np.arange(len(classes)), [target_balance[c] for c in classes], width, color="k", label="target")
    for j, (name, (y, contrib)) in enumerate(mixes.items()):
        label = Path(name).name if os.sep in name else name
        ax1.semilogx(f, measure_spectrum(y, SAMPLE_RATE), lw=1, label=label)
        bal = class_balance_lu(contrib)
        ax2.bar(
            np.arange(len(classes)) + (j + 1) * width,
            [bal.get(c, np.nan) for c in classes],
            width,
            label=label,
        )
    ax1.set(xlabel="Hz", ylabel="dB (loudness-referenced)", title="long-term spectrum")
    ax2.set(
        xticks=np.arange(len(classes)) + 0.4, xticklabels=classes, ylabel="LU re. sum", title="class balance"
    )
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
