"""Per-track decisions (``decisions.json``, :mod:`fxmix.model.decisions`) taken into a DAW: plug-in settings
per track for the Reaper write-back and the preset export.

A track's chain is its normalization (the parametric approximation of
:func:`fxmix.plugin_presets.exporters.build_chain`: PEQ > compressor > utility) followed by the mixer's
decisions (:func:`fxmix.plugin_presets.exporters.mixer_chain`: PEQ > compressor, then fader and pan). In a
Reaper project the fader and pan go to the track's ``VOLPAN`` (the console's constant-power pan turned into
the project's balance pan plus volume: the same channel gains), and a first utility restores the gains fxmix
rendered the track with (its own and its folder parents' volume and pan), because Reaper runs track FX
before the track's fader. The console mixer's master stage goes to the master track's FX chain
(:mod:`fxmix.plugin_presets.master`: compressor > utility > limiter).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.host_bridge.reaper import Project, TrackSettings, track_gains, volpan_from_gains
from fxmix.plugin_presets.export import track_chains
from fxmix.plugin_presets.master import LIMITER_TOLERANCE_DB, latency_samples, master_sliders
from fxmix.plugin_presets.rfxchain import chain_text

#: utility JSFX sliders that leave the signal as it is, but for the channel gains (dB) in front
_UTILITY_REST = [0.0, 0.0, -2.0, 100.0]


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln]


def reaper_track_settings(
    project: Project, doc: Mapping, index: Mapping[str, int], heard: Mapping[str, np.ndarray]
) -> tuple[dict[int, TrackSettings], list[str]]:
    """Each mixed track's :class:`TrackSettings` for :func:`fxmix.host_bridge.reaper.write_project_copy`, and
    notes on what could not be written.

    Args:
        project: the project the decisions were made on.
        doc: the decisions document (its tracks named as ``index``'s keys).
        index: track name -> track index in ``project``.
        heard: track name -> the audio its normalization was decided on (44.1 kHz).
    """
    chains = track_chains(doc, heard)
    settings: dict[int, TrackSettings] = {}
    notes: list[str] = []
    parents = {p for i in index.values() for p in _ancestors(project, i)}
    for name, i in index.items():
        norm, mixer = chains[name]
        if i in parents:
            notes.append(f"track {name!r} is a folder with its own items: its FX would also process its children, "
                         "so its decisions are in decisions.json only")
            continue
        g = np.abs(track_gains(project, i))
        head = [20 * np.log10(max(float(x), 1e-6)) for x in g] + _UTILITY_REST
        text = chain_text(f"{name}/input", {"utility": head})
        text += chain_text(f"{name}/normalization", norm.jsfx_sliders())
        text += chain_text(f"{name}/mixer", mixer.jsfx_sliders(fader=False))
        if mixer.bus_sliders():  # the exciter's gains carry the fader and pan; the bus EQ is linear, both channels
            text += chain_text(f"{name}/bus", mixer.bus_sliders())
        left = 10 ** ((mixer.gain_db + mixer.left_gain_db) / 20)
        right = 10 ** ((mixer.gain_db + mixer.right_gain_db) / 20)
        volume, pan = volpan_from_gains(left, right)
        settings[i] = TrackSettings(volume, pan, tuple(_lines(text)))
    for p in parents:  # their gains are in the children's first utility
        settings.setdefault(p, TrackSettings(1.0, 0.0))
    if doc.get("mixer") == "console" and any(t["mixer"]["reverb_send_db"] > -40.0 for t in doc["tracks"]):
        notes.append("the console's reverb sends are not written (no reverb JSFX); their levels are in "
                     "decisions.json")
    notes += unwritten_bus_stages(doc)
    return settings, notes


def unwritten_bus_stages(doc: Mapping) -> list[str]:
    """Notes on the console's class-bus stages that have no plug-in in the written chains (their settings are
    in the decisions document): the transient cut, and the exciter where the tracks' exciter gains are not in
    the document."""
    notes = []
    excited = {c: v for c, v in (doc.get("exciter_db") or {}).items() if v is not None}
    if excited and not any(t["mixer"].get("exciter") for t in doc.get("tracks", [])):  # a document without the
        # tracks' exciter gains (written before they were recorded)
        notes.append("the console's class-bus exciter is not written (no exciter JSFX): REAPER plays the "
                     "tracks without the harmonics fxmix added (" + ", ".join(f"{c} {v:+.0f} dB" for c, v in
                                                                    excited.items()) + "; decisions.json)")
    if doc.get("transient_cut_db"):
        notes.append("the console's class-bus transient cut is not written (no transient JSFX): REAPER plays "
                     "the onsets without the cut fxmix made (" + ", ".join(
                         f"{c} {v:g} dB" for c, v in doc["transient_cut_db"].items()) + "; decisions.json)")
    return notes


def reaper_master_lines(project: Project, doc: Mapping) -> tuple[tuple[str, ...], list[str]]:
    """The master track's plug-in lines for a decisions document with a master stage (none without one) and
    notes on what is written and how REAPER's playback of it differs from the rendered mix."""
    plan = doc.get("master")
    if not plan:
        return (), []
    sliders = master_sliders(plan)
    text = chain_text("master", sliders)
    lag = latency_samples(SAMPLE_RATE)
    notes = [
        f"master track FX: the master stage as fxmix compressor (glue: threshold {sliders['comp'][1]:.2f} dB, "
        f"ratio {plan['ratio']:g}, {plan['attack_ms']:g}/{plan['release_ms']:g} ms"
        + (f", input {sliders['comp'][0]:+.2f} dB" if sliders["comp"][0] else "")
        + f") > fxmix utility (gain {sliders['utility'][2]:+.2f} dB to {plan['target_lufs']:g} LUFS) > fxmix "
        f"limiter ({plan['ceiling_dbtp']:g} dBTP, true-peak, {sliders['limiter'][1]:g} ms look-ahead, "
        f"{lag} samples of latency that REAPER compensates)",
        "the limiter JSFX detects true peaks as fxmix does but decides once (fxmix re-measures the places it "
        "limited and limits them again) and sees silence past the song's edges (fxmix mirrors them), so REAPER's "
        "master can pass the ceiling slightly where fxmix's re-check would act (on the tests the chain's emulation "
        f"differs from fxmix's master by less than {LIMITER_TOLERANCE_DB:g} dB of the signal); the tracks' FX are "
        "parametric approximations, so the master's input differs as they do",
    ]
    if project.master_fx:
        notes.append(f"the project's own {len(project.master_fx)} master FX stay before fxmix's (fxmix did not "
                     "render them): bypass them to hear the mix as rendered")
    if abs(project.master_volume - 1.0) > 1e-9:
        notes.append(f"the project's master volume ({20 * np.log10(max(abs(project.master_volume), 1e-9)):+.1f} "
                     "dB) follows the master FX in REAPER; fxmix's mix has none: set it to 0 dB to compare")
    return tuple(_lines(text)), notes


def _ancestors(project: Project, index: int) -> list[int]:
    out, t = [], project.tracks[index]
    while t.parent is not None:
        out.append(t.parent)
        t = project.tracks[t.parent]
    return out
