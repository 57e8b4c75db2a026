"""Human-readable outputs: the demo report and `--plot` PNGs (matplotlib, optional extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness, measure_spectrum


def plot_spectra(path: Path, stems: dict, profile) -> Path:
    """Normalized stem spectra against the profile targets, one panel per class."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'fxmix[plot]'") from exc
    f = band_centers_hz()
    fig, axes = plt.subplots(1, len(stems), figsize=(4 * len(stems), 3.2), sharey=True)
    for ax, (c, x) in zip(np.atleast_1d(axes), stems.items()):
        tgt = profile.targets[c].spectrum_db
        if np.any(x):
            s = measure_spectrum(x, C.SAMPLE_RATE)
            ax.semilogx(f, s - np.mean(s - tgt), label="normalized")
        ax.semilogx(f, tgt, "--", label="target")
        ax.set_title(c)
        ax.set_xlabel("Hz")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("dB (level-aligned)")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
        "| class | input LUFS | normalized LUFS | EQ range dB | compressor | pan balance dB |",
        "|---|---|---|---|---|---|",
    ]
    for c, x in loaded.buses.items():
        p = res.params.get(c, {})
        eq = p.get("eq")
        comp = p.get("compression")
        pan = p.get("panning")
        eq_s = f"{min(eq['gain_db']):+.1f}..{max(eq['gain_db']):+.1f}" if eq else "-"
        comp_s = (
            f"{comp['threshold_db']:.1f} dB, {comp['ratio']:.0f}:1" if comp and comp["ratio"] > 1 else "off"
        )
        pan_s = f"{pan['balance_db']:+.2f}" if pan else "-"
        lines.append(f"| {c} | {_lufs(x)} | {_lufs(res.normalized[c])} | {eq_s} | {comp_s} | {pan_s} |")
    lines += [
        "",
        f"Mix: {doc['mix_lufs']} LUFS -> {doc['outputs'].get('mix')}",
        f"Normalized stems and params.json: {Path(doc['outputs'].get('mix', '.')).parent}",
    ]
    if doc["notes"]:
        lines += ["", "Notes:"] + [f"- {m}" for m in doc["notes"]]
    return "\n".join(lines) + "\n"
