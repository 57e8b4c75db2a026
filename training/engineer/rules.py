"""The engineer's content rules: each decision follows from a measured property of the music.

One function per rule; each returns plain numbers and is documented with its source in training/DATA.md
("Engineer v2"). :func:`decide` applies them all to a session and returns one JSON-ready dict per track.
"""

from __future__ import annotations

import math

import numpy as np

from ...dsp.bands import band_centers_hz
from ...dsp.constants import REVERB_RETURN
from .analysis import TrackAnalysis, arrangement_density, masking_excess_db
from .taste import Taste

#: Roles the rules know; anything else is treated like "chords".
ROLES = ("lead", "bass", "drums", "chords", "pad", "arpeggio", "counter", "backing", "fx")
#: The role a track gets from its class when the session does not say.
CLASS_ROLE = {"vocals": "lead", "drums": "drums", "bass": "bass", "other": "chords"}
#: Drum pieces' level within the drum group (LU), by a word of the instrument label.
DRUM_PIECE_LU = {
    "kick": 0.0,
    "bass drum": 0.0,
    "snare": 0.0,
    "clap": -2.0,
    "tom": -4.0,
    "hat": -6.0,
    "ride": -7.0,
    "crash": -8.0,
    "cymbal": -8.0,
    "perc": -6.0,
    "shaker": -8.0,
}
#: Lead level above the accompaniment is capped (LU).
LEAD_GAP_MAX_LU = 9.0
#: Masking cuts: the band range considered and the number of cuts per track.
MASK_RANGE_HZ = (150.0, 8000.0)
MASK_CUTS = 2
MASK_Q = 1.4
#: Per role: compressor ratio, the crest factor (dB) the engineer aims at, attack (ms), release in beats.
COMP_ROLE = {
    "lead": (3.5, 11.0, 5.0, 0.5),
    "bass": (4.0, 8.0, 10.0, 0.5),
    "drums": (3.0, 14.0, 20.0, 0.25),
    "chords": (2.5, 15.0, 15.0, 0.5),
    "pad": (2.0, 13.0, 30.0, 1.0),
    "arpeggio": (2.5, 15.0, 10.0, 0.5),
    "counter": (3.0, 15.0, 8.0, 0.5),
    "backing": (3.0, 11.0, 8.0, 0.5),
    "fx": (2.0, 14.0, 20.0, 1.0),
}
#: Reverb send per role (dB, at 100 BPM and three accompanying parts); None = no send.
REVERB_ROLE_DB = {
    "lead": -7.0,
    "bass": -18.0,
    "drums": -9.0,  # a kit's room and overhead sound, which close-miked SoundFont pieces lack
    "chords": -10.0,
    "pad": -9.0,
    "arpeggio": -10.0,
    "counter": -10.0,
    "backing": -9.0,
    "fx": -8.0,
}
DELAY_ROLE_DB = {"lead": -18.0, "arpeggio": -22.0, "counter": -22.0}
DEFAULT_BPM = 100.0
#: Drum-kit pieces off centre (x taste width), as a drummer-perspective overhead picture places them.
HAT_PAN = 0.35
TOM_PAN = 0.5


def role_of(track) -> str:
    role = track.role if track.role in ROLES else CLASS_ROLE[track.cls]
    if track.cls == "drums":
        return "drums"
    if track.cls == "bass":
        return "bass"
    return role


def is_low_end(track, a: TrackAnalysis) -> bool:
    """Bass parts and kick drums carry the low end the mix is built on: centred, no high-pass above 40 Hz."""
    label = track.instrument.lower()
    return role_of(track) == "bass" or "kick" in label or "bass drum" in label or a.centroid_hz < 150.0


def part_labels(tracks) -> list:
    """The part each track plays: a drum kit's tracks are one part, every other track its own."""
    return ["drums" if t.cls == "drums" else i for i, t in enumerate(tracks)]


def drum_piece_lu(track) -> float:
    label = track.instrument.lower()
    return next((v for k, v in DRUM_PIECE_LU.items() if k in label), 0.0)


# ------------------------------------------------------------------------------------------------ levels


def level_targets(tracks, analyses: list[TrackAnalysis], taste: Taste) -> tuple[list[float], list[dict]]:
    """Target loudness (LUFS, after the track chain) per track, and why.

    Accompaniment: each role group sits at anchor + the role's offset, shared among the group's tracks
    (drum pieces by their kit weight). Lead: the accompaniment level (power mean of its role groups) + the
    lead gap, which grows with the number of parts playing under it. Human tracks keep the composer's relative levels.
    """
    roles = [role_of(t) for t in tracks]
    targets = [float("nan")] * len(tracks)
    why: list[dict] = [{} for _ in tracks]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(roles):
        if r != "lead" and tracks[i].level_db is None and not analyses[i].silent:
            groups.setdefault(r, []).append(i)
    for r, idx in groups.items():
        w = np.array([drum_piece_lu(tracks[i]) if r == "drums" else 0.0 for i in idx])
        share = 10 * np.log10(np.sum(10 ** (w / 10)))
        for i, wi in zip(idx, w):
            targets[i] = taste.anchor_lufs + taste.role_offset_lu(r) + float(wi - share)
            why[i] = {"role_offset_lu": round(taste.role_offset_lu(r), 3), "group_size": len(idx)}
    acc = [targets[i] for idx in groups.values() for i in idx]
    group_lufs = [taste.anchor_lufs + taste.role_offset_lu(r) for r in groups]
    acc_lufs = 10 * math.log10(np.mean([10 ** (v / 10) for v in group_lufs])) if groups else taste.anchor_lufs
    parts = part_labels(tracks)
    for i, r in enumerate(roles):
        if r == "lead" and tracks[i].level_db is None and not analyses[i].silent:
            dens = arrangement_density(analyses, i, parts)
            gap = min(taste.lead_gap_lu + taste.density_slope_lu * max(0.0, dens - 2.0), LEAD_GAP_MAX_LU)
            targets[i] = acc_lufs + gap
            why[i] = {
                "density": round(dens, 3),
                "lead_gap_lu": round(gap, 3),
                "accomp_lufs": round(acc_lufs, 3),
            }
    human = [i for i, t in enumerate(tracks) if t.level_db is not None and not analyses[i].silent]
    if human:
        raw = [analyses[i].loudness_lufs + tracks[i].level_db for i in human]
        total = 10 * math.log10(sum(10 ** (v / 10) for v in raw))
        ref = 10 * math.log10(sum(10 ** (v / 10) for v in acc)) if acc else taste.anchor_lufs + 3.0
        for i, v in zip(human, raw):
            targets[i] = v - total + ref
            why[i] = {"composer_level_db": round(float(tracks[i].level_db), 3)}
    return targets, why


# ------------------------------------------------------------------------------------------------ EQ


def hpf_hz(track, a: TrackAnalysis, taste: Taste) -> float:
    """High-pass below the track's own lowest content (its register), so it gives up low end it does not own."""
    hz = taste.hpf_ratio * a.low_hz
    if is_low_end(track, a):
        return float(np.clip(hz, 20.0, 40.0))
    return float(np.clip(hz, 40.0, 500.0))


def hpf_response_db(hz: float) -> np.ndarray:
    """Magnitude (dB) of the two cascaded first-order high-passes at ``hz`` on the band grid."""
    f = band_centers_hz()
    return -10 * np.log10(1 + (hz / f) ** 2) * 2


def masking_cuts(i: int, mixed_db: list[np.ndarray], taste: Taste) -> list[dict]:
    """Cut a track where the rest of the mix covers it: up to MASK_CUTS peak cuts at the most-masked bands.

    The masking excess of a band is read against the track's median excess over its own content bands
    (those within 30 dB of its peak band): a cut goes where the track is buried *more* than it is overall.
    Depth = mask_depth x (relative excess - threshold), at most mask_max_db; bands closer than an octave to
    a stronger cut are skipped.
    """
    f = band_centers_hz()
    own = mixed_db[i]
    excess = masking_excess_db(own, [m for j, m in enumerate(mixed_db) if j != i])
    ok = (f >= MASK_RANGE_HZ[0]) & (f <= MASK_RANGE_HZ[1]) & (own > own.max() - 30.0)
    if not ok.any():
        return []
    score = np.where(ok, excess - float(np.median(excess[ok])) - taste.mask_threshold_db, -np.inf)
    cuts: list[dict] = []
    for b in np.argsort(score)[::-1]:
        if len(cuts) == MASK_CUTS or not np.isfinite(score[b]) or score[b] <= 0:
            break
        if any(abs(math.log2(f[b] / c["hz"])) < 1.0 for c in cuts):
            continue
        depth = min(taste.mask_depth * float(score[b]), taste.mask_max_db)
        cuts.append(
            {
                "hz": round(float(f[b]), 2),
                "db": round(-depth, 3),
                "q": MASK_Q,
                "excess_db": round(float(excess[b]), 3),
            }
        )
    return cuts


# ------------------------------------------------------------------------------------------------ dynamics


def compression(track, a: TrackAnalysis, taste: Taste, bpm: float) -> dict:
    """Ratio by role; gain reduction from how far the crest factor exceeds the role's; release by tempo."""
    ratio0, crest_target, attack, release_beats = COMP_ROLE.get(role_of(track), COMP_ROLE["chords"])
    ratio = max(1.2, ratio0 * taste.ratio_scale)
    gr = float(np.clip(taste.comp_amount * (a.crest_db - crest_target), 0.0, 12.0))
    threshold = a.peak_db - gr * ratio / (ratio - 1.0)
    release = float(np.clip(release_beats * 60000.0 / bpm, 40.0, 600.0))
    return {
        "threshold_db": round(threshold, 3),
        "ratio": round(ratio, 3),
        "attack_ms": attack,
        "release_ms": round(release, 2),
        "target_gr_db": round(gr, 3),
        "crest_db": round(a.crest_db, 3),
    }


# ------------------------------------------------------------------------------------------------ panning


def pans(tracks, analyses: list[TrackAnalysis], taste: Taste) -> list[float]:
    """Low end and lead centred (human tracks too); other parts spread with register (higher = wider),
    doubled parts (same instrument label and role) mirrored, the rest alternating sides in register order;
    the composer's pans of the other human tracks kept."""
    out = [0.0] * len(tracks)
    spread: list[int] = []
    for i, (t, a) in enumerate(zip(tracks, analyses)):
        if is_low_end(t, a) or role_of(t) in ("lead", "bass") or a.silent:
            out[i] = 0.0  # also for human tracks: a module's fixed channel panning is not a composer's choice
        elif t.pan is not None:
            out[i] = float(t.pan)
        elif t.cls == "drums":
            label = t.instrument.lower()
            out[i] = (
                taste.side * taste.width * (HAT_PAN if "hat" in label else TOM_PAN if "tom" in label else 0.0)
            )
        else:
            spread.append(i)
    done: set[int] = set()
    side = taste.side
    for i in sorted(spread, key=lambda k: analyses[k].centroid_hz):
        if i in done:
            continue
        mag = taste.width * float(np.clip(math.log2(analyses[i].centroid_hz / 200.0) / 4.0, 0.3, 1.0))
        twin = next((j for j in spread if j != i and j not in done and _doubled(tracks[i], tracks[j])), None)
        out[i] = side * mag
        done.add(i)
        if twin is not None:
            out[twin] = -side * mag
            done.add(twin)
        else:
            side = -side
    return [round(float(p), 4) for p in out]


def _doubled(a, b) -> bool:
    return a.instrument.lower() == b.instrument.lower() and role_of(a) == role_of(b)


# ------------------------------------------------------------------------------------------------ sends


def sends(track, density: float, bpm: float, taste: Taste) -> dict:
    """Reverb more at slow tempi and less in dense arrangements; a tempo-synced delay on leads."""
    role = role_of(track)
    tempo_db = float(np.clip(3.0 * (DEFAULT_BPM - bpm) / 40.0, -3.0, 3.0))
    density_db = -float(np.clip(density - 3.0, 0.0, 4.0))
    rev = REVERB_ROLE_DB.get(role, REVERB_ROLE_DB["chords"])
    dly = DELAY_ROLE_DB.get(role)
    return {
        "reverb_db": None if rev is None else round(rev + tempo_db + density_db + taste.reverb_db, 3),
        "delay_db": None if dly is None else round(dly + tempo_db + density_db + taste.delay_db, 3),
    }


def returns(bpm: float, mean_density: float, taste: Taste) -> dict:
    """The shared reverb and delay: bigger room at slower tempi and in sparse songs; delay synced to the beat."""
    room = float(
        np.clip(taste.room + 0.15 * (DEFAULT_BPM - bpm) / 40.0 - 0.03 * max(0.0, mean_density - 3), 0.15, 0.9)
    )
    return {
        "reverb": {
            "room_size": round(room, 3),
            # the rest as the console's reverb, which is this return at the mean taste and tempo
            **{k: v for k, v in REVERB_RETURN.items() if k != "room_size"},
        },
        "delay": {
            "delay_s": round(taste.delay_beats * 60.0 / bpm, 5),
            "feedback": 0.3,
            "send_hpf_hz": 300.0,
            "send_lpf_hz": 6000.0,
        },
    }
