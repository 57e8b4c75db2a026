"""Export of mix decisions: decide per track, write presets / pedalboard chains / Reaper ``.RfxChain``."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..dsp import constants as C
from ..dsp.audio import write_text_atomic
from ..dsp.chain import normalize_stem
from .exporters import ExportedChain, MixerChain, build_chain, mixer_chain, scale_params
from .master import master_sliders
from .peq import ParametricEq
from .rfxchain import MASTER_CHAIN, chain_text, copy_jsfx, install_steps
from .schema import Preset, preset_from_dict, save_preset

FORMATS = ("json", "pedalboard", "rfxchain")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_decisions` wrote.

    ``written``: every file, in order (the JSFX under ``Effects/fxmix/`` last); ``eq_fits``: per track, the
    parametric EQ of its pedalboard chain / ``.RfxChain`` with its errors; ``install_steps``: how to install
    the ``.RfxChain`` export in Reaper (None without that format).
    """

    written: list[Path] = field(default_factory=list)
    eq_fits: dict[str, ParametricEq] = field(default_factory=dict)
    install_steps: str | None = None

    def eq_fit_lines(self) -> list[str]:
        """One line per track: the parametric EQ's filters, output gain and its curve and stem errors."""
        return [f"{name}: {fit.summary()}" for name, fit in self.eq_fits.items()]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "track"


def export_decisions(
    tracks: Mapping[str, tuple[str, np.ndarray]], out_dir: str | Path, formats, preset: Preset
) -> ExportResult:
    """Decide per track (name -> (class, (2, n) audio at 44.1 kHz)), write ``formats`` into ``out_dir``.

    With "rfxchain", the JSFX the chains load are copied into ``out_dir/Effects/fxmix/``.
    """
    profile = preset.load_profile()
    stages = [s for s in preset.enabled_stages() if s != "reverb"]
    amounts = {s: preset.stages[s].amount for s in stages}
    out = Path(out_dir)
    written: list[Path] = []
    chains: list[Path] = []
    fits: dict[str, ParametricEq] = {}
    for name, (cls, audio) in tqdm(tracks.items(), desc="export", unit="track"):
        res = normalize_stem(audio, C.SAMPLE_RATE, cls, profile, stages=stages, where=name)
        if res.silent:
            continue
        params = scale_params(res.params, amounts)
        base = out / _safe(name)
        if "json" in formats:
            d = preset.to_dict()
            d["name"] = f"{preset.name}: {name}"
            d["decisions"] = {name: {"class": cls, "params": {k: v.to_dict() for k, v in params.items()}}}
            written.append(save_preset(preset_from_dict(d, str(base)), out / f"{base.name}.preset.json"))
        if "pedalboard" in formats or "rfxchain" in formats:
            chain = build_chain(audio, C.SAMPLE_RATE, params, name=name, class_name=cls)
            if chain.eq is not None:
                fits[name] = chain.eq
            if "pedalboard" in formats:
                written += chain.write_pedalboard(out / f"{base.name}.pedalboard.json")
            if "rfxchain" in formats:
                chains.append(write_text_atomic(out / f"{base.name}.RfxChain", chain.rfxchain_text()))
                written.append(chains[-1])
    steps = None
    if "rfxchain" in formats:
        written += copy_jsfx(out)
        steps = install_steps(out, chains)
    return ExportResult(written, fits, steps)


# ------------------------------------------------------------------------ the final per-track decisions
#: the console's class-bus settings kept in each track's ``.decisions.json`` as ``class_bus`` (the transient cut
#: has no JSFX; the exciter's level is in its JSFX's output gains)
CLASS_BUS_KEYS = ("exciter_db", "transient_cut_db")
#: formats of :func:`export_track_decisions`
DECISION_FORMATS = ("json", "rfxchain")


def track_chains(doc: Mapping, heard: Mapping[str, np.ndarray]) -> dict[str, tuple[ExportedChain, MixerChain]]:
    """Per track of a decisions document (:mod:`fxmix.model.decisions`): its normalization chain (built on
    ``heard[name]``, what the normalization was decided on: the track, or its class bus) and its mixer chain.
    Chains on the same audio and parameters are built once (the tracks of one class bus)."""
    out: dict[str, tuple[ExportedChain, MixerChain]] = {}
    built: dict[tuple[int, str], ExportedChain] = {}
    for t in doc["tracks"]:
        name = t["name"]
        params = {k: v for k, v in t["normalization"].items() if k != "scope" and v is not None}
        audio = heard[name]
        key = (id(audio), repr(sorted(params.items())))
        if key not in built:
            built[key] = build_chain(audio, C.SAMPLE_RATE, params, name=name, class_name=t["class"])
        out[name] = (built[key], mixer_chain(doc, t, C.SAMPLE_RATE))
    return out


def export_track_decisions(
    doc: Mapping, heard: Mapping[str, np.ndarray], out_dir: str | Path, formats=DECISION_FORMATS
) -> ExportResult:
    """Write each track's final decisions, normalization followed by the mixer: ``<track>.RfxChain`` (PEQ >
    compressor > utility of the normalization, then the mixer's PEQ > compressor > utility with its pan and
    fader, then its class-bus PEQ where the console has one) and ``<track>.decisions.json`` (the track's entry of the document with the JSFX slider values); a
    console mix's master stage likewise as ``fxmix-master.*`` (compressor > utility > limiter, for the master
    track: :mod:`fxmix.plugin_presets.master`)."""
    out = Path(out_dir)
    written: list[Path] = []
    chains: list[Path] = []
    fits: dict[str, ParametricEq] = {}
    for name, (norm, mixer) in track_chains(doc, heard).items():
        base = out / _safe(name)
        sliders = {"normalization": norm.jsfx_sliders(), "mixer": mixer.jsfx_sliders(fader=True)}
        if mixer.bus_sliders():
            sliders["bus"] = mixer.bus_sliders()
        if norm.eq is not None:
            fits[name] = norm.eq
        if "rfxchain" in formats:
            text = chain_text(f"{name}/normalization", sliders["normalization"])
            text += chain_text(f"{name}/mixer", sliders["mixer"])
            text += chain_text(f"{name}/bus", sliders["bus"]) if "bus" in sliders else ""
            chains.append(write_text_atomic(out / f"{base.name}.RfxChain", text))
            written.append(chains[-1])
        if "json" in formats:
            entry = next(t for t in doc["tracks"] if t["name"] == name)
            d = {"format": doc["format"], "model": doc.get("model"), "mixer": doc.get("mixer"),
                 "track": entry, "jsfx_sliders": sliders}
            bus = {k: (doc.get(k) or {}).get(entry["class"]) for k in CLASS_BUS_KEYS if doc.get(k)}
            if bus:  # the class-bus stages without a plug-in: their settings, for the notes
                d["class_bus"] = bus
            written.append(write_text_atomic(out / f"{base.name}.decisions.json", json.dumps(d, indent=1) + "\n"))
    if doc.get("master"):
        sliders = master_sliders(doc["master"])
        if "rfxchain" in formats:
            chains.append(write_text_atomic(out / f"{MASTER_CHAIN}.RfxChain", chain_text("master", sliders)))
            written.append(chains[-1])
        if "json" in formats:
            d = {"format": doc["format"], "model": doc.get("model"), "mixer": doc.get("mixer"),
                 "master": doc["master"], "jsfx_sliders": sliders}
            written.append(write_text_atomic(out / f"{MASTER_CHAIN}.decisions.json", json.dumps(d, indent=1) + "\n"))
    steps = None
    if "rfxchain" in formats:
        written += copy_jsfx(out)
        steps = install_steps(out, chains)
    return ExportResult(written, fits, steps)
