"""The ``human`` family: songs whose balance a human composer set, and the reviewed instrument table.

Sources (Debian main, installed with apt-get; nothing shipped): the tracker modules of ``tecnoballz-data``,
``freedroid-data``, ``bomberclone-data``, ``ri-li-data`` and ``ballz-data`` and the General MIDI songs of
``openttd-openmsx`` and ``planetblupi-music-midi``. The table ``training/data/human_instruments.json`` lists
every file (package, licence, split, duration, activity per second) and every instrument (name, class, role,
the features the draft heuristics used, and a one-line reason); it is drafted by :func:`draft_table` and then
reviewed by hand (``fxmix data human-table``).

Excerpts: a song is cut into windows of ``seconds`` starting at 0 s and stepping by ``seconds`` (no overlap);
a window counts when at least two instruments play through most of it (median over its seconds). Each file
lends at most ``MAX_EXCERPTS_PER_FILE`` windows, spread evenly over the song. Splits are per file, so no song
is heard in two splits.

Mix decisions: for modules the composer's level and pan are baked into each instrument's solo render; the solo
is folded to a mono dry track by projecting onto its pan direction (constant-power law, θ = (pan + 1)·π/4,
L = cos θ, R = sin θ), and ``level_db`` / ``pan`` hold what puts it back: the composer's mix of the track is
``pan_law(audio · 10^(level_db/20), pan)``. For MIDI songs the dry render runs at CC7 = 127 and CC10 = 64 and
the composer's CC7 / CC10 become ``level_db`` / ``pan`` (see :mod:`.midi`).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import ConfigError

from .openmpt import TrackerModule

TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "human_instruments.json"
MODULE_PACKAGES = {
    "tecnoballz-data": ("/usr/share/games/tecnoballz/musics", "GPL-3.0-or-later"),
    "freedroid-data": ("/usr/share/games/freedroid/sound", "GPL-2.0-or-later"),
    "bomberclone-data": ("/usr/share/games/bomberclone/music", "GPL-2.0-only"),
    "ri-li-data": ("/usr/share/games/ri-li/Ri-li/Sounds", "GPL-2.0-only OR GPL-3.0-only"),
    "ballz-data": ("/usr/share/games/ballz", "BSD-3-Clause"),
}
MIDI_PACKAGES = {
    "openttd-openmsx": ("/usr/share/games/openttd/baseset/openmsx", "GPL-2.0-only"),
    "planetblupi-music-midi": ("/usr/share/planetblupi/music", "GPL-3.0-or-later"),
}
MODULE_EXTENSIONS = (".mod", ".xm", ".s3m", ".it")
MAX_EXCERPTS_PER_FILE = 6
#: A file's weight in the split shares is what it can lend: at most MAX_EXCERPTS_PER_FILE songs of the corpus's
#: default 20 s (a 30-min MIDI file lends no more than a 2-min one).
SPLIT_WEIGHT_CAP_S = MAX_EXCERPTS_PER_FILE * 20.0
HUMAN_INSTALL = "apt-get install -y --no-install-recommends libopenmpt0 " + " ".join(
    [*MODULE_PACKAGES, *MIDI_PACKAGES]
)
_DRUM_WORDS = r"kick|\bbd\b|bass ?drum|snare|\bsd\b|hat|\bhh\b|cymb|crash|ride|tom|drum|perc|clap|rim|shak|conga|bongo"
_BASS_WORDS = r"bass|\bsub\b|808"
_LEAD_WORDS = r"lead|vox|voc|voice|choir|aah|ooh|sing|solo|flute|sax|trump|whistle|melod"


@dataclass(frozen=True)
class Excerpt:
    """One human song: a window of a module or MIDI file."""

    kind: str  # "module" or "midi"
    package: str
    file: str  # path relative to the package folder
    start_s: float
    split: str

    @property
    def name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(self.file).stem).strip("-").lower()
        return f"{stem}-{int(round(self.start_s)):04d}s"


def package_root(package: str) -> Path:
    folder = (MODULE_PACKAGES.get(package) or MIDI_PACKAGES[package])[0]
    return Path(folder)


def package_licence(package: str) -> str:
    return (MODULE_PACKAGES.get(package) or MIDI_PACKAGES[package])[1]


@lru_cache(maxsize=1)
def load_table(path: str | None = None) -> dict:
    """The reviewed instrument table (shipped in the repository)."""
    p = Path(path) if path else TABLE_PATH
    if not p.is_file():
        raise ConfigError(f"{p}: instrument table missing; draft it with `fxmix data human-table --write`")
    return json.loads(p.read_text(encoding="utf-8"))


def file_entry(kind: str, package: str, file: str) -> dict:
    for entry in load_table()[kind + "s"]:
        if entry["package"] == package and entry["file"] == file:
            return entry
    raise ConfigError(f"{package}/{file}: not in {TABLE_PATH.name}; redraft the table")


def excerpts(seconds: float, splits: tuple[str, ...] = ("train", "valid", "test")) -> dict[str, list[Excerpt]]:
    """Per split, every usable excerpt, ordered round-robin over files (first windows of each file first)."""
    table = load_table()
    out: dict[str, list[Excerpt]] = {s: [] for s in splits}
    for split in splits:
        per_file: list[list[Excerpt]] = []
        for kind in ("module", "midi"):
            for entry in table[kind + "s"]:
                if entry["split"] != split:
                    continue
                act = entry["active_per_s"]
                windows = [k * seconds for k in range(int(len(act) // seconds))
                           if np.median(act[int(k * seconds): int((k + 1) * seconds)]) >= 2]
                if len(windows) > MAX_EXCERPTS_PER_FILE:
                    pick = np.linspace(0, len(windows) - 1, MAX_EXCERPTS_PER_FILE).round().astype(int)
                    windows = [windows[i] for i in pick]
                per_file.append([Excerpt(kind, entry["package"], entry["file"], float(w), split) for w in windows])
        depth = max((len(f) for f in per_file), default=0)
        out[split] = [f[d] for d in range(depth) for f in per_file if d < len(f)]
    return out


# ----------------------------------------------------------------------------------------------- drafting
def _features(x: np.ndarray, sample_rate: int) -> dict:
    """Spectral centroid, crest factor and percussiveness (share of energy within 60 ms after onsets)."""
    mono = x.mean(axis=0)
    rms = float(np.sqrt(np.mean(mono**2)) + 1e-12)
    hop = 1024
    frames = mono[: len(mono) // hop * hop].reshape(-1, hop)
    spec = np.abs(np.fft.rfft(frames * np.hanning(hop), axis=1))
    freqs = np.fft.rfftfreq(hop, 1.0 / sample_rate)
    e = spec.sum(axis=1)
    active = e > e.max() * 1e-3 if e.size else e
    centroid = float(np.sum(spec[active] @ freqs) / max(np.sum(e[active]), 1e-12)) if np.any(active) else 0.0
    env = np.sqrt(np.mean(frames**2, axis=1))
    rise = np.maximum(np.diff(env, prepend=0.0), 0.0)
    onsets = rise > 0.3 * env.max() if env.size else rise
    near = np.zeros_like(env, dtype=bool)
    for k in np.flatnonzero(onsets):
        near[k: k + 3] = True
    perc = float(np.sum(env[near] ** 2) / max(np.sum(env**2), 1e-12))
    decay = float(np.mean(env[near]) / max(np.mean(env[env > 0.05 * env.max()]), 1e-12)) if near.any() else 0.0
    return {"centroid_hz": round(centroid), "crest_db": round(20 * math.log10(np.max(np.abs(mono)) / rms + 1e-12), 1),
            "percussive": round(perc, 3), "onset_ratio": round(decay, 2)}


def draft_class(name: str, feats: dict, notes: dict) -> tuple[str, str, str]:
    """(class, role, reason) from the name, then pitch range and spectrum; reviewed by hand afterwards."""
    low = name.lower()
    distinct, median = notes.get("distinct", 0), notes.get("median", 0)
    if re.search(_DRUM_WORDS, low):
        return "drums", "drums", f"name '{name}' names a drum"
    if re.search(_BASS_WORDS, low) and distinct > 2:
        return "bass", "bass", f"name '{name}' says bass and it plays {distinct} pitches"
    if re.search(_BASS_WORDS, low):
        return "drums", "drums", f"'{name}' plays {distinct} pitch(es): a bass drum"
    if distinct <= 3 and (feats["percussive"] > 0.35 or feats["centroid_hz"] > 3000 or feats["crest_db"] > 16):
        return "drums", "drums", (f"{distinct} pitch(es), percussive {feats['percussive']}, "
                                  f"centroid {feats['centroid_hz']} Hz: a drum sample")
    if re.search(_LEAD_WORDS, low):
        return "vocals", "lead", f"name '{name}' names a lead instrument"
    return "other", "chords", f"melodic, median note {median}, centroid {feats['centroid_hz']} Hz"


def draft_module(package: str, path: Path, sample_rate: int = SAMPLE_RATE) -> dict:
    """Table entry of one module: instruments with features and draft classes, activity per second."""
    mod = TrackerModule(path)
    dur = min(mod.duration_s, 600.0)
    n_s = int(dur)
    active = np.zeros(n_s, int)
    insts = []
    for unit in sorted(mod.unit_notes):
        x = mod.render(0.0, dur, solo=unit, sample_rate=sample_rate)
        per_s = np.abs(x[:, : n_s * sample_rate]).max(axis=0).reshape(n_s, sample_rate).max(axis=1)
        if per_s.max(initial=0.0) < 1e-4:
            continue
        active += per_s > 1e-3
        st = mod.unit_notes[unit]
        notes = {"count": st.count, "distinct": len(st.pitches), "low": min(st.pitches),
                 "median": int(np.median(st.pitches)), "high": max(st.pitches)}
        feats = _features(x, sample_rate)
        name = mod.unit_names[unit] if unit < len(mod.unit_names) else ""
        cls, role, reason = draft_class(name, feats, notes)
        insts.append({"unit": unit, "name": name, "class": cls, "role": role, "reason": reason,
                      "notes": notes, "features": feats})
    classify_file(insts)
    rel = str(path.relative_to(package_root(package)))
    return {"package": package, "file": rel, "format": mod.format, "title": mod.title,
            "unit_kind": mod.unit_kind, "duration_s": round(dur, 2), "active_per_s": active.tolist(),
            "instruments": insts}


def classify_file(insts: list[dict]) -> None:
    """File-level draft rules after the per-instrument ones: the bass line, then the lead.

    Tracker note numbers depend on each sample's tuning, so register is judged by spectral centroid: melodic
    instruments darker than 650 Hz are bass, and without one the darkest melodic instrument is the bass when
    it is below 900 Hz.
    """
    melodic = [i for i in insts if i["class"] == "other"]
    if not any(i["class"] == "bass" for i in insts) and melodic:
        for i in melodic:
            if i["features"]["centroid_hz"] < 650:
                i["class"], i["role"] = "bass", "bass"
                i["reason"] = f"melodic and dark (centroid {i['features']['centroid_hz']} Hz): the bass line"
        darkest = min(melodic, key=lambda i: i["features"]["centroid_hz"])
        if not any(i["class"] == "bass" for i in insts) and darkest["features"]["centroid_hz"] < 900:
            darkest["class"], darkest["role"] = "bass", "bass"
            darkest["reason"] = (f"darkest melodic instrument (centroid {darkest['features']['centroid_hz']} Hz)"
                                 ": the bass line")
    _pick_lead(insts)


def _pick_lead(insts: list[dict]) -> None:
    """Without a named lead, the busiest melodic instrument in the upper register carries the tune."""
    if any(i["class"] == "vocals" for i in insts):
        return
    melodic = [i for i in insts if i["class"] == "other" and i["features"]["centroid_hz"] >= 700]
    if melodic:
        lead = max(melodic, key=lambda i: (i["notes"]["count"] * i["notes"]["distinct"], -i["unit"]))
        lead["class"], lead["role"] = "vocals", "lead"
        lead["reason"] = (f"busiest upper-register melodic part ({lead['notes']['count']} notes, "
                          f"{lead['notes']['distinct']} pitches, centroid {lead['features']['centroid_hz']} Hz): the tune")


def assign_splits(entries: list[dict], share_valid: float = 0.15, share_test: float = 0.15) -> None:
    """Per file, by a stable hash order: test until ~15 % of the weight, then valid ~15 %, then train (a file
    weighs its duration up to :data:`SPLIT_WEIGHT_CAP_S`)."""
    weight = {id(e): min(float(e["duration_s"]), SPLIT_WEIGHT_CAP_S) for e in entries}
    total = sum(weight.values())
    order = sorted(entries, key=lambda e: zlib.crc32(f"{e['package']}/{e['file']}".encode()))
    acc = 0.0
    for e in order:
        e["split"] = "test" if acc < share_test * total else "valid" if acc < (share_test + share_valid) * total else "train"
        acc += weight[id(e)]


def draft_midi(package: str, path: Path) -> dict:
    """Table entry of one MIDI song: tracks with GM-program classes, the lead picked, activity per second."""
    from .material import gm_class, gm_role  # material imports the procedural composer; only needed here
    from .midi import read_midi

    tracks, dur, bpm = read_midi(path)
    n_s = int(min(dur, 900.0))
    active = np.zeros(n_s, int)
    out = []
    for tr in tracks:
        on = np.zeros(n_s, bool)
        for n in tr.notes:
            on[int(n.start_s): min(int(math.ceil(n.start_s + n.dur_s)), n_s)] = True
        active += on
        pitches = [n.pitch for n in tr.notes]
        cls = gm_class(tr.program, tr.drum)
        role = gm_role(tr.program, tr.drum)
        reason = ("MIDI channel 10: drum kit" if tr.drum else
                  f"GM program {tr.program} is a bass" if cls == "bass" else f"GM program {tr.program}")
        out.append({"key": tr.key, "name": tr.name, "program": tr.program, "class": cls, "role": role,
                    "reason": reason, "notes": {"count": len(pitches), "median": int(np.median(pitches)),
                                                "low": min(pitches), "high": max(pitches)}})
    leads = [t for t in out if t["class"] == "other" and (52 <= t["program"] <= 87) and t["notes"]["median"] >= 60]
    if leads:
        lead = max(leads, key=lambda t: t["notes"]["count"])
        lead["class"], lead["role"] = "vocals", "lead"
        lead["reason"] = f"GM program {lead['program']} (voice/wind/lead synth) carries the tune, median {lead['notes']['median']}"
    rel = str(path.relative_to(package_root(package)))
    return {"package": package, "file": rel, "tempo_bpm": round(bpm, 3), "duration_s": round(dur, 2),
            "active_per_s": active.tolist(), "tracks": out}


def find_files(kind: str) -> list[tuple[str, Path]]:
    """(package, path) of every module or MIDI file of the human-family packages that is installed."""
    packages = MODULE_PACKAGES if kind == "module" else MIDI_PACKAGES
    exts = MODULE_EXTENSIONS if kind == "module" else (".mid", ".midi")
    out = []
    for pkg, (folder, _) in packages.items():
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"{root}: package {pkg} is not installed; install them all: {HUMAN_INSTALL}")
        # case-sensitive extensions: ri-li's "language.It" is a text file, not an Impulse Tracker module
        out += [(pkg, p) for p in sorted(root.rglob("*")) if p.suffix in exts and p.is_file()]
    return out


def draft_table(progress: bool = True) -> dict:
    """Draft the whole table from the installed packages (renders every module once per instrument)."""
    from tqdm import tqdm

    files = [("module", *f) for f in find_files("module")] + [("midi", *f) for f in find_files("midi")]
    modules, midis = [], []
    for kind, pkg, path in tqdm(files, desc="instruments", unit="file", disable=not progress):
        (modules if kind == "module" else midis).append(
            draft_module(pkg, path) if kind == "module" else draft_midi(pkg, path))
    assign_splits(modules)
    assign_splits(midis)
    return {
        "about": "Instrument -> class table of the human family (see fxmix.training.corpus.human). Drafted by "
                 "heuristics (name rules, pitch range, spectral centroid, crest factor, percussiveness), then "
                 "reviewed: 'reviewed' says how each entry was checked.",
        "packages": {p: {"folder": f, "licence": lic} for p, (f, lic) in {**MODULE_PACKAGES, **MIDI_PACKAGES}.items()},
        "modules": modules,
        "midis": midis,
    }
