"""Dry sessions of every family: ``procedural``, ``gm`` and ``human``.

- ``procedural``: the project's numpy synthesizers (:mod:`fxmix.training.synth_sources`), one track per class;
  test songs use the held-out ``fmshuffle`` family.
- ``gm``: FluidR3_GM (MIT) plays MMA grooves, Bach chorales or procedural scores, one track per part and per
  drum-kit piece; drums from the FluidR3 kit or the AVL Black Pearl kit (CC-BY-SA-3.0). The test split is
  held out by SoundFont: MuseScore General (MIT) with the AVL Red Zeppelin kit, and by groove/chorale. The lead
  is sung by Festival with words on a third of the songs that have one.
- ``human``: composer-balanced excerpts (:mod:`.human`); modules rendered per instrument with libopenmpt,
  MIDI songs per track with FluidR3_GM in every split.

Every family's parts get performed dynamics (:mod:`.performance`): the procedural and gm parts in their notes'
velocities; module solos (sample replay) and the rendered tracks of the human MIDI songs (whose composers'
velocities are written dynamics, often one value a part) at their onsets, with their loudness kept. Leads are
moved by octaves into a drawn singer's register (:mod:`.material`); a share of the gm songs gets its chord
parts voiced low (:func:`.material.with_low_voicing`).

Dry tracks of the procedural and gm families are peak-normalised to a random recording level (-18..-6 dBFS);
human tracks are peak-normalised to -6 dBFS with the gain folded into ``level_db``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from fxmix.dsp.constants import CLASSES, SAMPLE_RATE

from ..engineer.render import pan_gains
from ..synth_sources import TEST_FAMILIES, TRAIN_FAMILIES, compose, render_dry
from . import festival, human, material
from .fluid import synth_for
from .midi import composer_mix, read_midi
from .notes import NoteEvent, Part, shift, split_drums
from .openmpt import TrackerModule
from .performance import perform_audio, perform_parts, performance_db
from .session import DrySession, DryTrack

FAMILIES = ("procedural", "gm", "human")
FLUID_R3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
MUSESCORE = "/usr/share/sounds/sf3/MuseScore_General.sf3"
BLACK_PEARL = "/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2"
RED_ZEPPELIN = "/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2"
LICENCES = {FLUID_R3: "MIT (FluidR3_GM)", MUSESCORE: "MIT (MuseScore General)",
            BLACK_PEARL: "CC-BY-SA-3.0 (AVL Drumkits)", RED_ZEPPELIN: "CC-BY-SA-3.0 (AVL Drumkits)"}
MAX_TRACKS = 24
SILENT_PEAK = 1e-4
HUMAN_PEAK_DB = -6.0
FESTIVAL_SHARE = 1 / 3


@dataclass(frozen=True)
class SongPlan:
    """What to build for one song; ``index`` and ``seed`` determine everything drawn at random."""

    index: int
    name: str
    family: str
    split: str
    seed: int
    seconds: float
    material: str = ""  # gm: "mma:<groove>", "chorale:<name>", "score"; human: excerpt kind
    excerpt: human.Excerpt | None = None
    soundfont: str = FLUID_R3


def _normalised(x: np.ndarray, peak_db: float) -> tuple[np.ndarray, float]:
    """x scaled to ``peak_db`` dBFS peak, and the gain (dB) that was applied."""
    peak = float(np.max(np.abs(x)))
    g = 10 ** (peak_db / 20) / peak
    return (x * np.float32(g)).astype(np.float32), 20 * math.log10(g)


def _tracks_from_parts(parts: list[Part], plan: SongPlan, rng: np.random.Generator, n: int,
                       drum_font: str | None, human_levels: bool) -> list[DryTrack]:
    font = synth_for(plan.soundfont)
    out: list[DryTrack] = []
    for k, p in enumerate(parts):
        if p.drum and drum_font:
            x = synth_for(drum_font).render(p, n, drum_kit_on_melodic=True)
            src, lic = f"{drum_font.rsplit('/', 1)[-1]} ({p.source})", f"{LICENCES[drum_font]}; notes {p.licence}"
        else:
            x = font.render(p, n)
            src, lic = f"{plan.soundfont.rsplit('/', 1)[-1]} ({p.source})", f"{LICENCES[plan.soundfont]}; notes {p.licence}"
        if float(np.max(np.abs(x))) < SILENT_PEAK:
            continue
        if human_levels:
            # a composer's velocities are written dynamics, not a performance: performed dynamics on top,
            # loudness kept, as for module solos (the composer's balance is loudness-based)
            x, g_db = _normalised(perform_audio(x, SAMPLE_RATE, rng), HUMAN_PEAK_DB)
            level = None if p.level_db is None else round(p.level_db - g_db, 3)
        else:
            x, _ = _normalised(x, float(rng.uniform(-18.0, -6.0)))
            level = None
        out.append(DryTrack(f"{k:02d}_{_safe(p.name)}", p.cls, p.instrument, x, src, lic, p.role, level, p.pan))
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:32] or "track"


def procedural_session(plan: SongPlan) -> DrySession:
    rng = np.random.default_rng([plan.seed, plan.index, 1])
    fams = TEST_FAMILIES if plan.split == "test" else TRAIN_FAMILIES
    fam = str(fams[int(rng.integers(len(fams)))])
    score = _performed_score(compose(fam, plan.seconds, rng), rng)
    stems, timbres = render_dry(score, plan.seconds, SAMPLE_RATE, rng)
    roles = {"vocals": "lead", "drums": "drums", "bass": "bass", "other": "chords"}
    tracks = [DryTrack(f"{i:02d}_{c}", c, f"procedural {fam} {c}", stems[c], f"fxmix procedural synth ({fam})",
                       material.PROCEDURAL_LICENCE, roles[c]) for i, c in enumerate(CLASSES)
              if float(np.max(np.abs(stems[c]))) > SILENT_PEAK]
    return DrySession(plan.name, plan.family, plan.split, plan.seed, score.bpm, tracks)


def _performed_score(score, rng: np.random.Generator):
    """The procedural score with performed dynamics (:func:`.notes.performance_db`; the numpy voices are linear
    in velocity) and its lead in a singer's register."""
    for c, notes in score.notes.items():
        d = performance_db([e.start_s for e in notes], rng)
        score.notes[c] = [replace(e, velocity=e.velocity * float(10 ** (x / 20))) for e, x in zip(notes, d)]
    octaves, _ = material.register_octaves([e.pitch for e in score.notes.get("vocals", [])], rng)
    score.notes["vocals"] = [replace(e, pitch=e.pitch + 12 * octaves) for e in score.notes.get("vocals", [])]
    return score


def _performed(parts: list[Part], rng: np.random.Generator, sung: bool) -> list[Part]:
    """Performed dynamics on every part, and the lead in a singer's register (male when Festival sings it:
    its kal voice is male)."""
    parts = perform_parts(parts, rng)
    return [material.in_register(p, rng, "male" if sung else None) if p.role == "lead" else p for p in parts]


def gm_session(plan: SongPlan) -> DrySession:
    rng = np.random.default_rng([plan.seed, plan.index, 1])
    n = int(round(plan.seconds * SAMPLE_RATE))
    kind, _, what = plan.material.partition(":")
    score = material.procedural_score(plan.seconds, rng, "pop")
    if kind == "mma":
        parts = material.mma_parts(score, what, rng) + [material.melody_part(score, rng)]
        bpm = score.bpm
    elif kind == "chorale":
        bpm = float(rng.uniform(60, 96))
        parts = material.chorale_parts(what, bpm, rng)
        if rng.random() < 0.5:  # a groove under half of the chorales, re-timed to the chorale's tempo
            groove = compose("pop", plan.seconds * 2, rng)
            k = groove.bpm / bpm
            notes = [NoteEvent(e.start_s * k, e.dur_s * k, e.pitch, int(np.clip(round(e.velocity * 127), 1, 127)))
                     for e in groove.notes["drums"] if e.start_s * k < plan.seconds]
            parts += split_drums(Part("drums", "drums", "drum kit", notes, 0, True, "drums",
                                      source="procedural groove", licence=material.PROCEDURAL_LICENCE))
    else:
        parts = material.score_parts(score, rng)
        bpm = score.bpm
    parts = [p for p in parts if p.active_in(0.0, plan.seconds)]
    # its own stream, so the draw does not move the song's other choices
    parts = material.with_low_voicing(parts, np.random.default_rng([plan.seed, plan.index, 4]))
    kits = (RED_ZEPPELIN,) if plan.split == "test" else (None, BLACK_PEARL)
    drum_font = kits[int(rng.integers(len(kits)))]
    sung = festival.festival_available() and rng.random() < FESTIVAL_SHARE
    parts = _performed(parts, rng, sung)
    tracks = _tracks_from_parts(parts[:MAX_TRACKS], plan, rng, n, drum_font, human_levels=False)
    if sung:
        lead = next((p for p in parts if p.role == "lead"), None)
        if lead is not None:
            x = festival.sing(lead.notes, n, bpm, SAMPLE_RATE, rng)
            if float(np.max(np.abs(x))) > SILENT_PEAK:
                x, _ = _normalised(x, float(rng.uniform(-18.0, -6.0)))
                tracks = [t for t in tracks if t.role != "lead"] + [
                    DryTrack(f"{len(parts):02d}_sung-lead", "vocals", "sung voice (Festival kal)", x,
                             f"Festival singing ({lead.source})", f"{festival.FESTIVAL_LICENCE}; notes {lead.licence}",
                             "lead")]
    return DrySession(plan.name, plan.family, plan.split, plan.seed, bpm, tracks)


def human_session(plan: SongPlan) -> DrySession:
    ex = plan.excerpt
    assert ex is not None, "human plans carry an excerpt"
    if ex.kind == "module":
        return _module_session(plan, ex)
    return _midi_session(plan, ex)


def _module_session(plan: SongPlan, ex: human.Excerpt) -> DrySession:
    entry = human.file_entry("module", ex.package, ex.file)
    mod = TrackerModule(human.package_root(ex.package) / ex.file)
    lic = human.package_licence(ex.package)
    solos = []
    for inst in entry["instruments"]:
        x = mod.render(ex.start_s, plan.seconds, solo=inst["unit"])
        if float(np.max(np.abs(x))) >= SILENT_PEAK:
            solos.append((inst, x))
    solos = _merge_quietest(solos)
    rng = np.random.default_rng([plan.seed, plan.index, 1])
    tracks = []
    for k, (inst, x) in enumerate(solos):
        el, er = float(np.sum(x[0].astype(np.float64) ** 2)), float(np.sum(x[1].astype(np.float64) ** 2))
        theta = math.atan2(math.sqrt(er), math.sqrt(el))
        pan = float(np.clip(theta / (math.pi / 4) - 1.0, -1.0, 1.0))
        g = pan_gains(pan)[:, 0]
        mono = ((g[0] * x[0] + g[1] * x[1]) / float(g @ g)).astype(np.float32)
        # sample replay repeats one peak per note: performed dynamics at the solo's onsets, loudness kept,
        # so the composer's balance (level_db, loudness-based) is unchanged
        dry, g_db = _normalised(perform_audio(np.stack([mono, mono]), SAMPLE_RATE, rng), HUMAN_PEAK_DB)
        label = inst["name"] or f"{entry['unit_kind']} {inst['unit'] + 1}"
        tracks.append(DryTrack(f"{k:02d}_{_safe(label)}", inst["class"], label, dry,
                               f"{ex.package}:{ex.file} {entry['unit_kind']} {inst['unit'] + 1} @ {ex.start_s:g} s",
                               lic, inst["role"], round(-g_db, 3), round(pan, 4)))
    return DrySession(plan.name, plan.family, plan.split, plan.seed, None, tracks)


def _merge_quietest(solos: list[tuple[dict, np.ndarray]]) -> list[tuple[dict, np.ndarray]]:
    """Above MAX_TRACKS, fold the quietest instruments of each class into one track per class."""
    if len(solos) <= MAX_TRACKS:
        return solos
    order = sorted(range(len(solos)), key=lambda i: -float(np.sum(solos[i][1] ** 2)))
    keep = sorted(order[: MAX_TRACKS - len(CLASSES)])
    merged: dict[str, np.ndarray] = {}
    for i in order[MAX_TRACKS - len(CLASSES):]:
        c = solos[i][0]["class"]
        merged[c] = merged.get(c, 0) + solos[i][1]
    out = [solos[i] for i in keep]
    for c, x in merged.items():
        out.append(({"unit": -1, "name": f"other {c} instruments", "class": c, "role": "", "reason": "merged"}, x))
    return out


def _midi_session(plan: SongPlan, ex: human.Excerpt) -> DrySession:
    entry = human.file_entry("midi", ex.package, ex.file)
    table = {t["key"]: t for t in entry["tracks"]}
    tracks, _, bpm = read_midi(human.package_root(ex.package) / ex.file)
    lic = human.package_licence(ex.package)
    end = ex.start_s + plan.seconds
    parts = []
    for tr in tracks:
        info = table.get(tr.key)
        if info is None:
            continue
        level, pan = composer_mix(tr, ex.start_s, end)
        p = Part(info["name"] or tr.key, info["class"], f"GM {tr.program}" if not tr.drum else "drum kit",
                 tr.notes, tr.program, tr.drum, info["role"], [(0.0, 7, 127), (0.0, 10, 64), *tr.ccs],
                 level, pan, f"{ex.package}:{ex.file} track {tr.key} @ {ex.start_s:g} s", lic)
        p = shift(p, ex.start_s, end)
        if p.notes:
            parts.append(p)
    rng = np.random.default_rng([plan.seed, plan.index, 1])
    n = int(round(plan.seconds * SAMPLE_RATE))
    dry = _tracks_from_parts(parts[:MAX_TRACKS], plan, rng, n, None, human_levels=True)
    return DrySession(plan.name, plan.family, plan.split, plan.seed, bpm, dry)


def build_session(plan: SongPlan) -> DrySession:
    session = {"procedural": procedural_session, "gm": gm_session, "human": human_session}[plan.family](plan)
    session.validate()
    return session
