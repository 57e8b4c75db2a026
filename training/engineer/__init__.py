"""Engineer v2: mixes a dry session the way its music asks, with a per-song taste.

``mix_session(session, rng)`` analyses every track (:mod:`.analysis`), decides level, high-pass, masking
cuts, compression, pan and sends from what it measured (:mod:`.rules`, each rule and its source in
training/DATA.md), with the song's taste drawn from ``rng`` (:mod:`.taste`), and renders the decisions with
pedalboard (:mod:`.render`): track chains, shared reverb/delay returns, class buses (tonal-balance EQ, glue
compression) and the master (glue compressor, true-peak limiter to a loudness target).

``mean_engineer_decisions(session)`` is the baseline without content rules: the engineer's class-mean
decisions (mean taste, no role, density, register, crest or masking input); ``render_decisions`` renders
either kind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ...dsp.constants import CLASSES, SAMPLE_RATE
from ...dsp.stages.master import master
from ...model.console.transient import BUS_TRANSIENT_DB
from . import rules
from .analysis import analyse_session, arrangement_density
from .render import BUS_PLR_DB, apply_buses, render_track
from .taste import Taste, draw_taste

#: Mean-engineer high-pass per class (Hz): the class means of the register rule on typical parts.
MEAN_HPF_HZ = {"vocals": 90.0, "drums": 30.0, "bass": 30.0, "other": 120.0}
#: Mean-engineer gain reduction (dB) at the track peaks, every track.
MEAN_GR_DB = 3.0
#: Highest sample peak (dBFS) of a stored wet track, class stem or their sum before the master.
STORE_PEAK_DBFS = -1.0


@dataclass
class MixedSession:
    """The engineer's output: per-track wet audio (class stems are their sums), the mastered mixture, every
    track decision and the song-level ones (returns, class buses, master, taste), all JSON-ready."""

    wet: list[np.ndarray]
    mixture: np.ndarray
    decisions: list[dict]
    master: dict
    stems: dict[str, np.ndarray] = field(default_factory=dict)


def _bpm(session) -> float:
    return float(session.tempo_bpm) if session.tempo_bpm else rules.DEFAULT_BPM


def song_plan(taste: Taste, returns: dict) -> dict:
    """Song-level decisions: shared returns, class buses (filled at render), master target."""
    return {
        "taste": taste.to_dict(),
        "returns": returns,
        "buses": {
            c: {
                "tonal_amount": taste.tonal_amount,
                "gr_db": taste.bus_gr_db,
                "eq": None,
                "threshold_db": None,
                "peak_plr_db": round(BUS_PLR_DB[c] + taste.bus_plr_db, 3) if c in BUS_PLR_DB else None,
                "peak_threshold_db": None,
                "transient_cut_db": BUS_TRANSIENT_DB[c],
            }
            for c in CLASSES
        },
        "trim_db": None,
        "target_lufs": round(taste.master_lufs, 3),
        "glue_gr_db": taste.master_gr_db,
        "glue_threshold_db": None,
        "gain_db": None,
    }


def engineer_decisions(session, taste: Taste) -> tuple[list[dict], dict]:
    """Engineer v2's decisions for every track, and the song plan."""
    sr, bpm = SAMPLE_RATE, _bpm(session)
    tracks = session.tracks
    an = analyse_session(tracks, sr)
    targets, why = rules.level_targets(tracks, an, taste)
    pans = rules.pans(tracks, an, taste)
    hpfs = [rules.hpf_hz(t, a, taste) for t, a in zip(tracks, an)]
    gains = [tg - a.loudness_lufs if np.isfinite(tg) else -200.0 for tg, a in zip(targets, an)]
    mixed = [a.band_db + g + rules.hpf_response_db(h) for a, g, h in zip(an, gains, hpfs)]
    parts = rules.part_labels(tracks)
    dens = [arrangement_density(an, i, parts) for i in range(len(tracks))]
    out = []
    for i, (t, a) in enumerate(zip(tracks, an)):
        cuts = [] if rules.role_of(t) == "lead" or a.silent else rules.masking_cuts(i, mixed, taste)
        out.append(
            _decision(
                t,
                targets[i],
                pans[i],
                hpfs[i],
                cuts,
                rules.compression(t, a, taste, bpm),
                rules.sends(t, dens[i], bpm, taste),
                {
                    **why[i],
                    "density": round(dens[i], 3),
                    "low_hz": round(a.low_hz, 2),
                    "centroid_hz": round(a.centroid_hz, 2),
                    "crest_db": round(a.crest_db, 3),
                },
            )
        )
    returns = rules.returns(bpm, float(np.mean(dens)) if dens else 0.0, taste)
    return out, song_plan(taste, returns)


def _decision(t, target, pan, hpf, cuts, comp, sends, why) -> dict:
    return {
        "track": t.name,
        "cls": t.cls,
        "instrument": t.instrument,
        "role": rules.role_of(t),
        "human": t.level_db is not None,
        "target_lufs": round(float(target), 3),
        "gain_db": None,
        "pan": round(float(pan), 4),
        "hpf_hz": round(float(hpf), 2),
        "eq_cuts": cuts,
        "compressor": comp,
        "sends": sends,
        "why": why,
    }


def mean_engineer_decisions(session) -> list[dict]:
    """The engineer's class-mean decisions without the content rules (the evaluation baseline).

    Mean taste; level per class (the class's role offset, vocals at the mean lead gap over the mean
    accompaniment), shared equally by the class's tracks; class-mean high-pass; no masking cuts; the class
    role's compressor at MEAN_GR_DB gain reduction; vocals, drums and bass centred, "other" tracks alternating
    sides at the mean width; role send levels at 100 BPM. Composer levels/pans are not used.
    """
    taste = Taste.mean()
    an = analyse_session(session.tracks, SAMPLE_RATE)
    acc = 10 * np.log10(sum(10 ** (taste.role_offset_lu(r) / 10) for r in ("drums", "bass", "chords")))
    cls_lu = {
        "vocals": acc + taste.lead_gap_lu + taste.density_slope_lu,
        "drums": taste.drums_lu,
        "bass": taste.bass_lu,
        "other": taste.chords_lu,
    }
    counts = {c: sum(t.cls == c for t in session.tracks) for c in CLASSES}
    out, side = [], taste.side
    for t, a in zip(session.tracks, an):
        role = rules.CLASS_ROLE[t.cls]
        ratio0, _, attack, release_beats = rules.COMP_ROLE[role]
        ratio = ratio0 * taste.ratio_scale
        comp = {
            "threshold_db": round(a.peak_db - MEAN_GR_DB * ratio / (ratio - 1), 3),
            "ratio": ratio,
            "attack_ms": attack,
            "release_ms": round(release_beats * 600.0, 2),
        }
        pan = 0.0
        if t.cls == "other":
            pan, side = side * taste.width * 0.6, -side
        target = taste.anchor_lufs + cls_lu[t.cls] - 10 * np.log10(counts[t.cls])
        sends = {"reverb_db": rules.REVERB_ROLE_DB[role], "delay_db": rules.DELAY_ROLE_DB.get(role)}
        d = _decision(t, target, pan, MEAN_HPF_HZ[t.cls], [], comp, sends, {"mean_engineer": True})
        d["role"], d["human"] = role, False
        out.append(d)
    return out


def mean_engineer_plan(session) -> dict:
    taste = Taste.mean()
    return song_plan(taste, rules.returns(rules.DEFAULT_BPM, 3.0, taste))


def render_decisions(session, decisions: list[dict], plan: dict | None = None) -> MixedSession:
    """Render track decisions (engineer v2's or the mean engineer's) and a song plan (default: the mean
    engineer's). Decisions and plan are copied; fields left None (fader gains, bus EQ and thresholds, master
    gain) are decided from the audio and recorded in the returned copies, so rendering those again replays."""
    sr = SAMPLE_RATE
    decisions = copy.deepcopy(decisions)
    plan = copy.deepcopy(plan if plan is not None else mean_engineer_plan(session))
    wet = [render_track(t.audio, d, plan["returns"], sr) for t, d in zip(session.tracks, decisions)]
    classes = [t.cls for t in session.tracks]
    wet = apply_buses(wet, classes, plan["buses"], sr)
    n = session.n_samples
    stems = {
        c: np.sum([w for w, k in zip(wet, classes) if k == c], axis=0)
        if c in classes
        else np.zeros((2, n), np.float32)
        for c in CLASSES
    }
    prebus = np.sum(wet, axis=0)
    wet, stems, prebus = _trimmed(wet, stems, prebus, plan)
    mixture = master(prebus, plan, sr)
    return MixedSession(wet, mixture, decisions, plan, {c: s.astype(np.float32) for c, s in stems.items()})


def _trimmed(wet: list[np.ndarray], stems: dict, prebus: np.ndarray, plan: dict):
    """Wet tracks, stems and their sum scaled by one gain so none peaks above STORE_PEAK_DBFS: they are stored
    as 24-bit PCM, which clips at full scale (a clipped stem has flattened onset peaks and no longer replays
    the master). Records ``plan["trim_db"]`` (replayed when given); the master's gain makes up the level."""
    if plan.get("trim_db") is None:
        peak = max(float(np.max(np.abs(x))) for x in [*wet, *stems.values(), prebus])
        over = 20 * np.log10(max(peak, 1e-9)) - STORE_PEAK_DBFS
        plan["trim_db"] = round(-float(over), 4) if over > 0 else 0.0
    if plan["trim_db"] == 0.0:
        return wet, stems, prebus
    g = np.float32(10 ** (plan["trim_db"] / 20))
    return [w * g for w in wet], {c: x * g for c, x in stems.items()}, prebus * g


def mix_session(session, rng: np.random.Generator) -> MixedSession:
    """Engineer v2: draw the song's taste from ``rng``, decide from the music, render."""
    taste = draw_taste(rng)
    decisions, plan = engineer_decisions(session, taste)
    return render_decisions(session, decisions, plan)


__all__ = ["MixedSession", "mean_engineer_decisions", "mix_session", "render_decisions", "engineer_decisions"]
