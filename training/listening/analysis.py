"""``fxmix listen analyze``: post-screening, descriptive statistics and significance tests of a listening test.

Unit of analysis: the listener. Each listener's rating of a method on an attribute is the mean over the test's
trials (songs); training and repeated trials are left out. Then, per attribute and method: mean, median and the
95 % confidence interval of the mean (Student's t over listeners); a Friedman test over methods (listeners as
blocks, three or more methods); pairwise two-sided Wilcoxon signed-rank tests (exact p without ties, else the
normal approximation) with Holm's correction over the pairs of the attribute.

Post-screening rule: a listener whose ratings in the repeated trial differ from their ratings of the same
stimuli in the original trial by more than :data:`REPEAT_THRESHOLD` points on average (over methods and
attributes) is dropped as inconsistent. A listener without a repeated trial is kept, with a note.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.stats

from ...dsp.audio import atomic_path, write_text_atomic
from ...dsp.errors import ConfigError
from .build import FORMAT_RESULTS, KEY_FILE, read_key

#: Largest mean |repeat - original| rating difference (0-100 scale) of a listener who is kept.
REPEAT_THRESHOLD = 20.0
ALPHA = 0.05


def results_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The results JSON files named, a folder meaning every ``*.json`` in it."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{p}: no such results file or folder")
    if not files:
        raise ConfigError(f"{', '.join(map(str, paths))}: no results (*.json) found")
    return files


def find_key(files: Sequence[Path]) -> Path:
    """The test's key next to the results: ``TEST_DIR/results/x.json`` -> ``TEST_DIR/key.json``."""
    for f in files:
        for d in (f.parent, f.parent.parent):
            if (d / KEY_FILE).is_file():
                return d / KEY_FILE
    raise ConfigError(f"no {KEY_FILE} next to {files[0]}; give the test's key with --key TEST_DIR/{KEY_FILE}")


def _load(path: Path, test_id: str) -> dict:
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable results JSON ({exc})") from exc
    if not isinstance(res, dict) or res.get("format") != FORMAT_RESULTS:
        raise ConfigError(f"{path}: not listening-test results (format {FORMAT_RESULTS!r})")
    if res.get("test_id") != test_id:
        raise ConfigError(
            f"{path}: results of test {res.get('test_id')}, the key is test {test_id}; give its key"
        )
    return res


def listener_scores(res: dict, key: dict, where: Path) -> tuple[dict, float | None]:
    """One listener: {method: {attribute: mean rating over trials}} and the mean |repeat - original| (or None)."""
    trials = {t["id"]: t for t in key["trials"]}
    attrs = key["attributes"]
    by_trial: dict[str, dict[str, dict[str, float]]] = {}  # trial -> method -> attribute -> rating
    for row in res.get("trials", []):
        kt = trials.get(row.get("id"))
        if kt is None:
            raise ConfigError(f"{where}: trial {row.get('id')!r} is not in the key")
        try:
            by_trial[row["id"]] = {
                kt["stimuli"][sid]["method"]: {a: float(r[a]) for a in attrs}
                for sid, r in row["ratings"].items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: trial {row['id']} has bad ratings ({exc})") from exc
    real = [t for t in key["trials"] if t["kind"] == "trial" and t["id"] in by_trial]
    if not real:
        raise ConfigError(f"{where}: no rated trials")
    methods = list(by_trial[real[0]["id"]])
    scores = {m: {a: float(np.mean([by_trial[t["id"]][m][a] for t in real])) for a in attrs} for m in methods}
    diff = None
    for t in key["trials"]:
        if t["kind"] == "repeat" and t["id"] in by_trial and t["repeat_of"] in by_trial:
            a, b = by_trial[t["id"]], by_trial[t["repeat_of"]]
            diff = float(np.mean([abs(a[m][x] - b[m][x]) for m in a for x in attrs]))
    return scores, diff


def holm(p: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), in the input order."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def _describe(v: np.ndarray) -> dict:
    n = len(v)
    mean = float(np.mean(v))
    half = float(scipy.stats.t.ppf(0.975, n - 1) * np.std(v, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "median": float(np.median(v)), "ci95": [mean - half, mean + half]}


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p: exact without ties or zero differences, else the normal approximation
    with tie correction (as R's ``wilcox.test``; scipy's own fallback, a permutation test, is ~1000x slower)."""
    d = np.round(a - b, 9)
    if not np.any(d):
        return 1.0
    nz = np.abs(d[d != 0])
    exact = len(nz) == len(d) and len(np.unique(nz)) == len(nz)
    return float(scipy.stats.wilcoxon(a, b, method="exact" if exact else "asymptotic").pvalue)


def _attribute_stats(values: dict[str, np.ndarray], alpha: float) -> dict:
    methods = list(values)
    out = {"methods": {m: _describe(values[m]) for m in methods}, "friedman": None, "pairs": []}
    n = len(next(iter(values.values())))
    if len(methods) >= 3 and n >= 2:
        stat, p = scipy.stats.friedmanchisquare(*[values[m] for m in methods])
        p = float(p) if np.isfinite(p) else 1.0
        out["friedman"] = {
            "statistic": float(stat) if np.isfinite(stat) else 0.0,
            "p": p,
            "significant": p < alpha,
        }
    pairs = list(itertools.combinations(methods, 2))
    raw = [_wilcoxon(values[a], values[b]) if n >= 2 else 1.0 for a, b in pairs]
    for (a, b), p, q in zip(pairs, raw, holm(raw) if raw else []):
        out["pairs"].append(
            {
                "a": a,
                "b": b,
                "median_diff": float(np.median(values[a] - values[b])),
                "p": p,
                "p_holm": q,
                "significant": q < alpha,
            }
        )
    return out


def analyze(
    paths: Sequence[str | os.PathLike],
    key_path: str | os.PathLike | None = None,
    *,
    threshold: float = REPEAT_THRESHOLD,
    alpha: float = ALPHA,
) -> dict:
    """Read results (files or folders), screen listeners, and compute every statistic. Returns JSON-ready data."""
    files = results_files(paths)
    key = read_key(key_path if key_path is not None else find_key(files))
    listeners, dropped, notes = [], [], []
    for f in files:
        res = _load(f, key["test_id"])
        scores, diff = listener_scores(res, key, f)
        who = {"file": str(f), "participant": res.get("participant") or f.stem, "repeat_diff": diff}
        if diff is None:
            notes.append(f"{who['participant']}: no repeated trial, kept unscreened")
        if diff is not None and diff > threshold:
            dropped.append(who)
        else:
            listeners.append((who, scores))
    if not listeners:
        raise ConfigError(f"every listener was dropped by post-screening (threshold {threshold} points)")
    methods = list(listeners[0][1])
    attributes = {}
    values = {}
    for a in key["attributes"]:
        values[a] = {m: np.array([s[m][a] for _, s in listeners]) for m in methods}
        attributes[a] = _attribute_stats(values[a], alpha)
    return {
        "test_id": key["test_id"],
        "alpha": alpha,
        "repeat_threshold": threshold,
        "methods": methods,
        "listeners": [w for w, _ in listeners],
        "dropped": dropped,
        "notes": notes,
        "attributes": attributes,
        "values": {a: {m: v.tolist() for m, v in d.items()} for a, d in values.items()},
    }


def format_report(res: dict) -> str:
    """The analysis as text: screening, a table per attribute, the tests."""
    lines = [
        f"{len(res['listeners'])} listeners kept, {len(res['dropped'])} dropped "
        f"(mean repeat difference > {res['repeat_threshold']:g} points)"
    ]
    lines += [
        f"  dropped {d['participant']}: repeat difference {d['repeat_diff']:.1f}" for d in res["dropped"]
    ]
    lines += [f"  note: {n}" for n in res["notes"]]
    for a, st in res["attributes"].items():
        lines += ["", f"{a}", f"  {'method':<24}{'mean':>8}{'median':>8}{'95% CI':>18}"]
        for m, d in sorted(st["methods"].items(), key=lambda kv: -kv[1]["mean"]):
            lo, hi = d["ci95"]
            lines.append(f"  {m:<24}{d['mean']:>8.1f}{d['median']:>8.1f}{f'[{lo:.1f}, {hi:.1f}]':>18}")
        if st["friedman"]:
            f = st["friedman"]
            lines.append(
                f"  Friedman chi2 = {f['statistic']:.2f}, p = {f['p']:.4g}{' *' if f['significant'] else ''}"
            )
        for p in st["pairs"]:
            mark = " *" if p["significant"] else ""
            lines.append(
                f"  {p['a']} vs {p['b']}: median diff {p['median_diff']:+.1f}, "
                f"Wilcoxon p = {p['p']:.4g}, Holm p = {p['p_holm']:.4g}{mark}"
            )
    lines += ["", f"* significant at the {res['alpha']:g} level"]
    return "\n".join(lines)


def write_json(path: str | os.PathLike, res: dict) -> Path:
    return write_text_atomic(path, json.dumps(res, indent=1) + "\n")


def plot_boxplots(res: dict, path: str | os.PathLike) -> Path:
    """Box plots of the per-listener ratings, one panel per attribute (PNG)."""
    import matplotlib  # optional dependency (the "plot" extra), needed only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attrs = list(res["values"])
    fig, axes = plt.subplots(1, len(attrs), figsize=(4.5 * len(attrs), 4), sharey=True, squeeze=False)
    for ax, a in zip(axes[0], attrs):
        methods = res["methods"]
        ax.boxplot([res["values"][a][m] for m in methods], showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        ax.set(title=a.replace("_", " "), ylim=(0, 100))
    axes[0][0].set_ylabel(f"rating (mean over trials), {len(res['listeners'])} listeners")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
