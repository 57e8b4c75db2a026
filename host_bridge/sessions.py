"""Engine sessions for the OSC server: one factory, shared model, per-session streaming state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fxmix.dsp.constants import REFERENCE_PROFILE
from fxmix.host_bridge.osc import SessionFactory
from fxmix.model.runtime import resolve_streaming_model
from fxmix.model.states import read_sidecar
from fxmix.model.streaming_runtime import step_graph

from .console_session import ConsoleSession, resolve_console_runner
from .engine import Session
from .step_builder import ensure_step_graph

log = logging.getLogger("fxmix")

#: Block sizes whose network step ``fxmix serve`` builds at start, so that opening a session with one of them
#: later costs no ONNX export (which holds the interpreter lock for a few hundred ms and would stall live sessions).
COMMON_BLOCK_SIZES = (64, 128, 256, 512, 1024, 2048)


def make_session_factory(
    model: Any = "default",
    profile: str = REFERENCE_PROFILE,
    realtime: bool = False,
    pipeline: bool | None = None,
    export_in_child: bool = False,
) -> SessionFactory:
    """Factory of engine sessions for the server.

    Args:
        model: ``"default"``, ``"none"``, a path to an exported causal network, or a loaded causal network
            (shared by all sessions; each session keeps its own streaming state); ``"console"`` (or a console
            mixer's folder or runner): :class:`~fxmix.host_bridge.console_session.ConsoleSession` sessions,
            every track normalized on its own and mixed by the console mixer.
        profile: profile name or JSON path used when a session does not switch it.
        realtime: realtime engine sessions (plans picked up when ready, never waited on; ONNX Runtime network
            step) as ``fxmix serve`` and ``fxmix bench bridge`` use; False gives reproducible sessions (the
            default, what tests compare against the in-process API).
        pipeline: run the network one block behind (``Session(pipeline=...)``; None: = realtime).
        export_in_child: realtime sessions of a block size whose network step is not built yet have it exported
            in a child process (:mod:`.step_builder`) first, so the open does not hold the interpreter lock that
            live sessions need (``fxmix serve``); False exports in this process (a host with nothing live).


    The network is loaded once here and shared (each session keeps its own streaming state), so opening a
    session reads no weights.
    """
    if is_console_model(model):
        runner = resolve_console_runner(model)  # loaded once, shared by the sessions

        def console_factory(sample_rate: int, block_samples: int, n_tracks: int, prof: str | None) -> Any:
            return ConsoleSession(sample_rate, block_samples, n_tracks, profile=prof or profile, model=runner,
                                  realtime=realtime)

        return console_factory
    model_arg: Any = None if isinstance(model, str) and model.lower() == "none" else model
    if isinstance(model_arg, str) or model_arg is None:
        model_arg = resolve_streaming_model(model_arg)[0]
    net = resolve_streaming_model(model_arg)[0] if export_in_child and realtime and model_arg is not None else None

    def factory(sample_rate: int, block_samples: int, n_tracks: int, prof: str | None) -> Any:
        if net is not None:
            ensure_step_graph(net, block_samples)
        return Session(
            sample_rate,
            block_samples,
            n_tracks,
            profile=prof or profile,
            model=model_arg,
            realtime=realtime,
            pipeline=pipeline,
        )

    return factory


def is_console_model(model: Any) -> bool:
    """Whether ``model`` names the track-level console mixer (``console``, its folder, or a loaded runner)."""
    if hasattr(model, "mixes_tracks"):
        return True
    if not isinstance(model, (str, Path)) or str(model).lower() in ("none", "default", "offline", "causal"):
        return False
    if str(model).lower() == "console":
        return True
    folder = Path(model)
    return (folder / "model.json").is_file() and read_sidecar(folder).get("arch") == "console"


def prebuild_steps(factory_model: Any, block_sizes: Iterable[int] = COMMON_BLOCK_SIZES) -> threading.Thread | None:
    """Build the network's streaming step for each block size on a background thread (idle at server start),
    so a later open of that size finds it cached. Returns the thread, or None without a network."""
    if is_console_model(factory_model):
        return None
    net = resolve_streaming_model(factory_model)[0]
    if net is None or not hasattr(net, "step"):
        return None

    def build() -> None:
        for n in block_sizes:
            try:
                step_graph(net, int(n))
            except Exception as exc:  # a size this network cannot step is opened (and refused) later, not here
                log.debug("no prebuilt step for %d-sample blocks: %s", n, exc)

    thread = threading.Thread(target=build, name="fxmix-prebuild", daemon=True)
    thread.start()
    return thread
