"""Human-readable outputs: the demo report, notes in plain words, and `--plot` PNGs (matplotlib, optional)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness, measure_spectrum


def _pyplot():
    """matplotlib's pyplot on the file-only backend (imported on use: it is an optional extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'fxmix[plot]'") from exc
    return plt


def _spectrum(x: np.ndarray) -> np.ndarray | None:
    return measure_spectrum(x, C.SAMPLE_RATE) if np.any(x) else None


def plot_spectra(path: Path, inputs: Mapping[str, np.ndarray], res, profile) -> Path:
    """Per class: the input, the normalized stem, the profile's target (level-aligned) and the EQ curve applied."""
    plt = _pyplot()
    f = band_centers_hz()
    classes = list(res.normalized)
    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 3.4), sharey=True)
    for ax, c in zip(np.atleast_1d(axes), classes):
        tgt = np.asarray(profile.targets[c].spectrum_db)
        for x, label, style in ((inputs.get(c), "input", ":"), (res.normalized[c], "normalized", "-")):
            s = None if x is None else _spectrum(x)
            if s is not None:
                ax.semilogx(f, s - np.mean(s - tgt), style, label=label)
        ax.semilogx(f, tgt, "--", label="target")
        eq = (res.params.get(c) or {}).get("eq")
        if eq:
            ax.semilogx(eq["freqs_hz"], np.asarray(eq["gain_db"]) + float(np.mean(tgt)), "-.", label="EQ applied (offset)")
        ax.set_title(c)
        ax.set_xlabel("Hz")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("dB (level-aligned)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return _save(fig, plt, path)


def plot_mix(path: Path, inputs: Mapping[str, np.ndarray], res) -> Path:
    """The mix's spectrum beside the normalized sum and the plain sum of the inputs (absolute, dB)."""
    plt = _pyplot()
    f = band_centers_hz()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    curves = (
        (res.mix, f"mix ({res.model})"),
        (np.sum(list(res.normalized.values()), axis=0), "normalized sum"),
        (np.sum(list(inputs.values()), axis=0), "input sum"),
    )
    for x, label in curves:
        s = _spectrum(np.asarray(x, np.float32))
        if s is not None:
            ax.semilogx(f, s, label=f"{label}, {integrated_loudness(x, C.SAMPLE_RATE):.1f} LUFS")
    ax.set_xlabel("Hz")
    ax.set_ylabel("dB (loudness-referenced)")
    ax.set_title("mix spectrum")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def eq_at_limit(eq: Mapping | None) -> tuple[int, int]:
    """(bands held at the EQ's +/- limit, bands) of an EQ decision."""
    if not eq:
        return 0, 0
    g = np.abs(np.asarray(eq["gain_db"], float))
    return int(np.count_nonzero(g >= C.EQ_MAX_GAIN_DB - 1e-6)), int(g.size)


def eq_limit_notes(params: Mapping[str, Mapping]) -> list[str]:
    """A plain-words note for each class whose EQ sits at its limit in some bands."""
    notes = []
    for c, p in params.items():
        n, total = eq_at_limit((p or {}).get("eq"))
        if n:
            notes.append(
                f"{c}: the EQ is held at its ±{C.EQ_MAX_GAIN_DB:.0f} dB limit in {n} of {total} bands: the stem has "
                "(almost) no energy where the profile expects some, or far too much; the normalized spectrum "
                "misses the target there (see --plot)"
            )
    return notes


def _lufs(x) -> str:
    v = integrated_loudness(x, C.SAMPLE_RATE)
    return f"{v:.1f}" if np.isfinite(v) else "silent"


def demo_report(loaded, res, doc: dict, elapsed_s: float) -> str:
    lines = [
        "# fxmix demo",
        "",
        f"Model: {res.model}. Profile: {doc['profile']}. Stages: {', '.join(doc['stages'])}. "
        f"Took {elapsed_s:.1f} s.",
        "",
        "| class | input LUFS | normalized LUFS | EQ range dB | EQ bands at limit | compressor | pan balance dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, x in loaded.buses.items():
        p = res.params.get(c, {})
        eq = p.get("eq")
        comp = p.get("compression")
        pan = p.get("panning")
        eq_s = f"{min(eq['gain_db']):+.1f}..{max(eq['gain_db']):+.1f}" if eq else "-"
        at, total = eq_at_limit(eq)
        comp_s = (
            f"{comp['threshold_db']:.1f} dB, {comp['ratio']:.0f}:1" if comp and comp["ratio"] > 1 else "off"
        )
        pan_s = f"{pan['balance_db']:+.2f}" if pan else "-"
        limit_s = f"{at}/{total}" if total else "-"
        lines.append(f"| {c} | {_lufs(x)} | {_lufs(res.normalized[c])} | {eq_s} | {limit_s} | {comp_s} | {pan_s} |")
    lines += [
        "",
        f"Mix: {doc['mix_lufs']} LUFS -> {doc['outputs'].get('mix')}",
        f"Normalized stems and params.json: {Path(doc['outputs'].get('mix', '.')).parent}",
    ]
    notes = doc["notes"] + eq_limit_notes(res.params)
    if doc.get("warnings"):
        lines += ["", "Warnings:"] + [f"- {m}" for m in doc["warnings"]]
    if notes:
        lines += ["", "Notes:"] + [f"- {m}" for m in notes]
    return "\n".join(lines) + "\n"
