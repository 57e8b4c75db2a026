"""Evaluation results: per-song rows gathered into means and medians, overall and per family; text tables,
JSON and per-song plots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..dsp.audio import write_text_atomic
from ..dsp.bands import band_centers_hz
from ..dsp.constants import SAMPLE_RATE
from ..dsp.features import measure_spectrum
from .eval_metrics import BOUNDS, METRICS, out_of_bounds

#: Order of the family tables (others follow alphabetically).
FAMILY_ORDER = ("procedural", "gm", "gm-heldout", "human")
_SHORT = {
    "mrstft": "mrstft",
    "spectral_err_db": "spectral dB",
    "panning_err": "panning",
    "dynamics_err_db": "dynamics dB",
    "level_balance_err_lu": "class bal LU",
    "track_balance_err_lu": "track bal LU",
    "loudness_err_lu": "loudness LU",
}


def _stats(rows: list[dict], methods: list[str]) -> dict:
    """{"n_songs", "mean": {method: {metric}}, "median": {...}} over ``rows`` (nan values left out)."""
    out = {"n_songs": len(rows), "mean": {}, "median": {}}
    for m in methods:
        mean, median = {}, {}
        for k in METRICS:
            v = np.array([r["methods"][m][k] for r in rows if m in r["methods"]], np.float64)
            v = v[np.isfinite(v)]
            mean[k] = float(v.mean()) if v.size else float("nan")
            median[k] = float(np.median(v)) if v.size else float("nan")
        out["mean"][m], out["median"][m] = mean, median
    return out


def family_order(families) -> list[str]:
    fams = set(families)
    return [f for f in FAMILY_ORDER if f in fams] + sorted(fams - set(FAMILY_ORDER))


def results(root: str | os.PathLike, split: str, profile: str, rows: list[dict]) -> dict:
    """The JSON-ready results: per-song rows, overall and per-family means and medians, bound violations."""
    methods: list[str] = []
    for r in rows:
        methods += [m for m in r["methods"] if m not in methods]
    overall = _stats(rows, methods)
    families = {f: _stats([r for r in rows if r["family"] == f], methods)
                for f in family_order(r["family"] for r in rows)}
    violations = [
        {"song": r["song"], "method": m, "metrics": out_of_bounds(v)}
        for r in rows for m, v in r["methods"].items() if out_of_bounds(v)
    ]
    return {
        "dataset": str(Path(root)),
        "split": split,
        "profile": profile,
        "n_songs": len(rows),
        "methods": methods,
        "metrics": list(METRICS),
        "bounds": dict(BOUNDS),
        "mean": overall["mean"],
        "median": overall["median"],
        "families": families,
        "bound_violations": violations,
        "songs": rows,
    }


def _label(m: str) -> str:
    return "/".join(Path(m).parts[-2:]) if os.sep in m else m


def _table(title: str, stats: dict, methods: list[str], metrics: list[str]) -> list[str]:
    head = f"{'method':<24}" + "".join(f"{_SHORT.get(c, c):>17}" for c in metrics)
    lines = [title, head]
    for m in methods:
        if m not in stats["mean"]:
            continue
        cells = "".join(
            f"{stats['mean'][m][c]:>8.3f} /{stats['median'][m][c]:>7.3f}" for c in metrics
        )
        lines.append(f"{_label(m):<24}{cells}")
    return lines


def format_table(res: dict) -> str:
    """Plain-text tables (cells: mean / median): overall, one per family, and the balance errors (class and
    track level) by family."""
    methods, metrics = res["methods"], list(res["metrics"])
    lines = [f"{res['split']} split, {res['n_songs']} songs, profile {res['profile']}; cells: mean / median"]
    lines += _table(f"all families ({res['n_songs']} songs)", res, methods, metrics)
    for fam, st in res["families"].items():
        lines.append("")
        lines += _table(f"family {fam} ({st['n_songs']} songs)", st, methods, metrics)
    lines += ["", _balance_table(res)]
    if res["bound_violations"]:
        lines.append(f"WARNING: {len(res['bound_violations'])} values over their documented bounds "
                     "(see bound_violations in --json)")
    return "\n".join(lines)


def _balance_table(res: dict) -> str:
    """Class- and track-level balance error (LU, mean / median) per method and family."""
    fams = list(res["families"])
    cols = ["all", *fams]
    head = f"{'balance error LU':<24}" + "".join(f"{c + ' class':>17}{c + ' track':>17}" for c in cols)
    lines = [head]
    for m in res["methods"]:
        cells = ""
        for st in [res, *(res["families"][f] for f in fams)]:
            for k in ("level_balance_err_lu", "track_balance_err_lu"):
                mean, med = st["mean"].get(m, {}).get(k, np.nan), st["median"].get(m, {}).get(k, np.nan)
                cells += f"{mean:>8.2f} /{med:>7.2f}"
        lines.append(f"{_label(m):<24}{cells}")
    return "\n".join(lines)


def write_json(path: str | os.PathLike, res: dict) -> Path:
    return write_text_atomic(path, json.dumps(res, indent=1, default=float) + "\n")


def plot_song(path: Path, target: np.ndarray, target_balance: dict[str, float], mixes: dict[str, np.ndarray],
              balances: dict[str, dict[str, float]]) -> None:
    """Long-term spectra (loudness-referenced) and class balance bars of each method vs the target."""
    import matplotlib  # optional dependency (the "plot" extra), needed only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    f = band_centers_hz()
    ax1.semilogx(f, measure_spectrum(target, SAMPLE_RATE), "k", lw=2, label="target")
    width = 0.8 / (len(mixes) + 1)
    classes = list(target_balance)
    ax2.bar(np.arange(len(classes)), [target_balance[c] for c in classes], width, color="k", label="target")
    for j, (name, y) in enumerate(mixes.items()):
        label = Path(name).name if os.sep in name else name
        ax1.semilogx(f, measure_spectrum(y, SAMPLE_RATE), lw=1, label=label)
        bal = balances.get(name, {})
        ax2.bar(np.arange(len(classes)) + (j + 1) * width, [bal.get(c, np.nan) for c in classes], width,
                label=label)
    ax1.set(xlabel="Hz", ylabel="dB (loudness-referenced)", title="long-term spectrum")
    ax2.set(xticks=np.arange(len(classes)) + 0.4, xticklabels=classes, ylabel="LU re. mix",
            title="class balance")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
