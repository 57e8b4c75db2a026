"""Running the console mixer: normalized tracks -> console decisions -> the pedalboard-rendered mix.

    mix, decisions = mix_tracks([(name, class, audio (2, n) at 44.1 kHz), ...], model_dir)

``model_dir`` holds ``model.safetensors`` + ``model.json`` (:func:`fxmix.model.states.save_model`, arch
``"console"``) and optionally ``model.onnx`` (:func:`export_onnx`), which is used when present. The tracks
must already be effect-normalized to their class targets (:func:`fxmix.dsp.chain.normalize_stem`), as in
training. The network sees every track's whole length (its features are pooled over time); the console is
rendered by :func:`fxmix.model.console.render_console_pedalboard`, so the mix is what a host gets with
pedalboard effects from the same decisions. The console's sum then goes through the master stage
(:mod:`fxmix.dsp.stages.master`: glue compressor, gain to the loudness target, -1 dBTP limiter) with the
corpus engineer's mean settings, as the mixes the mixer learnt from were mastered (``master=False``: the
console's sum as it is).

streaming-safe: no (whole-track analysis and rendering).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from fxmix.dsp.audio import as_stereo, atomic_path
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import CLASSES, SAMPLE_RATE
from fxmix.dsp.errors import ConfigError, ModelLoadError
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stages.master import default_plan
from fxmix.dsp.stages.master import master as master_stage

from .console import ConsoleParams, render_console_pedalboard
from .console.bus import bus_curves, profile_targets
from .console.exciter import exciter_mix_db
from .console.transient import BUS_TRANSIENT_DB
from .mixer import ConsoleMixer, class_indices, colour_of, onnx_inputs, track_features
from .names import model_profile
from .states import ONNX_NAME, load_model

log = logging.getLogger(__name__)

_INPUTS = ("features", "class_idx", "mask")
_OUTPUTS = ("units", "master_unit")


def export_onnx(net: ConsoleMixer, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Write ``net`` as ONNX with dynamic batch, track and frame axes (atomically). Returns the path."""
    path = Path(path)
    net = net.eval()
    axes = {"features": {0: "batch", 1: "tracks", 3: "frames"}, "class_idx": {0: "batch", 1: "tracks"},
            "mask": {0: "batch", 1: "tracks"}, "units": {0: "batch", 1: "tracks"}, "master_unit": {0: "batch"}}
    with atomic_path(path, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, onnx_inputs(net.config), str(tmp), input_names=list(_INPUTS), output_names=list(_OUTPUTS),
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    return path


class MixerRunner:
    """A loaded console mixer: ``runner(features, class_idx, mask) -> (u, master_u)`` as numpy, by ONNX
    Runtime when the folder has ``model.onnx`` (unless ``backend="eager"``), else the eager network. It mixes
    tracks, not class buses (``mixes_tracks``): the offline paths hand it every track through
    :func:`fxmix.model.automix.automix_tracks`."""

    mixes_tracks = True

    def __init__(self, model_dir: str | os.PathLike, backend: str = "auto", name: str | None = None):
        self.folder = Path(model_dir)
        self.net, self.sidecar = load_model(self.folder)
        if self.sidecar["arch"] != "console":
            raise ModelLoadError(f"{self.folder}: arch {self.sidecar['arch']!r} is not a console mixer")
        self.info = self.sidecar
        self.name = name or f"console mixer ({self.folder})"
        self.session = None
        onnx_path = self.folder / ONNX_NAME
        if backend not in ("auto", "eager", "onnx"):
            raise ConfigError(f"backend {backend!r}: choose auto, eager or onnx")
        if backend == "onnx" or (backend == "auto" and onnx_path.is_file()):
            import onnxruntime as ort  # lazy: only a folder with an ONNX export needs it

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, features: np.ndarray, class_idx: np.ndarray, mask: np.ndarray):
        if self.session is not None:
            feeds = dict(zip(_INPUTS, (features.astype(np.float32), class_idx.astype(np.int64),
                                       mask.astype(np.float32))))
            u, master = self.session.run(list(_OUTPUTS), feeds)
            return u, master
        with torch.no_grad():
            u, master = self.net(torch.from_numpy(features), torch.from_numpy(class_idx), torch.from_numpy(mask))
        return u.numpy(), master.numpy()


def decide(runner: MixerRunner, audio: np.ndarray, classes: list[str], dry=None) -> ConsoleParams:
    """Console decisions for normalized tracks ``audio`` (tracks, 2, n) of ``classes``; ``dry`` (the same
    tracks before the normalization, a sequence of (2, n) or mono) gives a network that reads the colour
    (:func:`colour_of`, one track at a time to bound memory) its input."""
    cfg = runner.net.config
    x = torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]
    colour = None
    if cfg.colour and dry is None:
        log.warning("%s reads each track's colour but got no dry tracks: it is told the normalization changed "
                    "nothing (pass dry= to mix_tracks, or mix through fxmix.automix_tracks)", runner.name)
    if cfg.colour and dry is not None:
        colour = torch.stack([colour_of(torch.from_numpy(as_stereo(d, f"dry track {i + 1}")), x[0, i], cfg)
                              for i, d in enumerate(dry)])[None]
    feats = track_features(x, cfg, colour)
    u, master = runner(feats.numpy(), class_indices([classes]).numpy(), np.ones((1, len(classes)), np.float32))
    return ConsoleParams.from_unit(torch.from_numpy(u), [classes], master_u=torch.from_numpy(master))


class _BusStages:
    """The class-bus stages a console mixer's config asks for (bus EQ, exciter, transient cut), as the arguments
    of its pedalboard render; what they measure is kept, so :meth:`record` puts it in the decisions, which then
    replay the mix."""

    def __init__(self, cfg, profile, classes):  # profile: a function giving the tonal targets' profile
        self.cfg = cfg
        self.curves: dict = {}
        self.levels: dict = {}
        self.gains: list = []
        self.targets = profile_targets(profile()) if cfg.bus_eq or cfg.exciter else {}
        self.transient = {c: BUS_TRANSIENT_DB[c] for c in classes} if cfg.transient else None

    def bus_eq(self, buses):
        self.curves.update(bus_curves(buses, self.targets, SAMPLE_RATE, fine=self.cfg.bus_eq_fine))
        return self.curves

    def exciter(self, buses):
        self.levels.update({c: exciter_mix_db(bus, exc, c, self.targets[c], SAMPLE_RATE)
                            for c, (bus, exc) in buses.items()})
        return self.levels

    def render_kwargs(self) -> dict:
        cfg = self.cfg
        return {"bus_eq": self.bus_eq if cfg.bus_eq else None, "exciter": self.exciter if cfg.exciter else None,
                "transient": self.transient, "exciter_gains": self.gains if cfg.exciter else None}

    def record(self, decisions: dict) -> None:
        cfg = self.cfg
        if cfg.transient:
            decisions["transient_cut_db"] = self.transient
        if cfg.exciter:
            decisions["exciter_db"] = {c: None if v is None else round(float(v), 4) for c, v in self.levels.items()}
            for d, g in zip(decisions["tracks"], self.gains):  # what a plug-in needs to make a track's harmonics
                d["exciter"] = {k: round(v, 4) for k, v in g.items()} or None
        if cfg.bus_eq:
            decisions["bus_eq_db"] = {c: [round(float(v), 4) for v in g] for c, g in self.curves.items()}
            if cfg.bus_eq_fine:  # the points of the curves: the profile's grid, not the console EQ's octaves
                decisions["bus_eq_hz"] = [round(float(f), 3) for f in band_centers_hz()]


def mix_tracks(
    tracks: list[tuple[str, str, np.ndarray]], model_dir: str | os.PathLike, *, backend: str = "auto",
    runner: MixerRunner | None = None, master: bool = True, dry: list[np.ndarray] | None = None,
    levelled: list[np.ndarray] | None = None, profile=None,
) -> tuple[np.ndarray, dict]:
    """Mix normalized tracks with the console mixer in ``model_dir``.

    Args:
        tracks: ``(name, class, audio)`` per track; audio (2, n) float at 44.1 kHz, all the same length,
            already effect-normalized to the class targets.
        model_dir: folder of a saved console mixer (see the module docstring).
        backend: ``auto`` (ONNX when exported), ``eager`` or ``onnx``.
        runner: a loaded :class:`MixerRunner` to reuse (``model_dir`` is then only named in messages).
        master: put the sum through the mean master stage (its filled plan is ``decisions["master"]``).
        dry: the tracks before their normalization, in the same order (a mixer that reads the colour needs
            them; without them it is told the normalization changed nothing).
        levelled: for a mixer that renders the levelled dry tracks (``render_levelled``), each dry track
            through the normalization's loudness stage alone, (2, n) in the same order (required there).
        profile: the :class:`~fxmix.dsp.profile.Profile` whose tonal targets a mixer with ``bus_eq`` EQs its
            class buses toward (default: the mixer's training profile).

    Returns:
        ``(mix (2, n) float32, decisions)``: the pedalboard rendering (mastered unless ``master=False``), and
        the console decisions as JSON
        (:meth:`ConsoleParams.to_dict`, track names included) with the model's name and sample rate.
    """
    if not tracks:
        raise ConfigError("mix_tracks: no tracks given")
    names, classes = [t[0] for t in tracks], [t[1] for t in tracks]
    bad = [f"{n} ({c})" for n, c in zip(names, classes) if c not in CLASSES]
    if bad:
        raise ConfigError(f"mix_tracks: tracks {bad} have no class of {CLASSES}; give each track one")
    lengths = {np.shape(t[2])[-1] for t in tracks}
    if len(lengths) != 1 or any(np.ndim(t[2]) != 2 or np.shape(t[2])[0] != 2 for t in tracks):
        raise ConfigError(f"mix_tracks: every track must be (2, n) of one length, got lengths {sorted(lengths)}")
    runner = runner or MixerRunner(model_dir, backend)
    audio = np.stack([np.asarray(t[2], np.float32) for t in tracks])
    if dry is not None and (len(dry) != len(tracks) or any(np.shape(d)[-1] != audio.shape[-1] for d in dry)):
        raise ConfigError("mix_tracks: give one dry track per track (mono or stereo), each the length of its "
                          "normalized track")
    params = decide(runner, audio, classes, dry)
    cfg = runner.net.config
    if cfg.render_levelled:
        if levelled is None or len(levelled) != len(tracks) or any(np.shape(x) != audio.shape[1:] for x in levelled):
            raise ConfigError(f"mix_tracks: {runner.name} renders the levelled dry tracks; give levelled= one (2, n) "
                              "track per track (or mix through fxmix.automix_tracks)")
        audio = np.stack([np.asarray(x, np.float32) for x in levelled])
    stages = _BusStages(cfg, lambda: profile if profile is not None else load_profile(model_profile(runner)), classes)
    mix = render_console_pedalboard(audio, params, SAMPLE_RATE, classes=classes, **stages.render_kwargs())
    plan = default_plan() if master and np.any(mix) else None  # a silent sum stays silent, with no plan
    if plan is not None:
        mix = master_stage(mix, plan, SAMPLE_RATE)
    decisions = params.to_dict(0, names)
    decisions["master"] = plan
    decisions["render_input"] = "levelled" if cfg.render_levelled else "normalized"
    for d, c in zip(decisions["tracks"], classes):
        d["class"] = c
    stages.record(decisions)
    decisions["model"] = {"arch": "console", "folder": str(Path(model_dir)), "sample_rate": SAMPLE_RATE,
                          "backend": "onnx" if runner.session is not None else "eager"}
    return mix, decisions
