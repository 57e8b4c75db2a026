"""Engine sessions for the OSC server: one factory, shared model, per-session streaming state."""

from __future__ import annotations

from typing import Any

from fxmix.dsp.constants import REFERENCE_PROFILE
from fxmix.host_bridge.osc import SessionFactory

from .engine import Session


def make_session_factory(
    model: Any = "default",
    profile: str = REFERENCE_PROFILE,
    realtime: bool = False,
    pipeline: bool | None = None,
) -> SessionFactory:
    """Factory of engine sessions for the server.

    Args:
        model: ``"default"``, ``"none"``, a path to an exported causal network, or a loaded causal network
            (shared by all sessions; each session keeps its own streaming state).
        profile: profile name or JSON path used when a session does not switch it.
        realtime: realtime engine sessions (plans picked up when ready, never waited on; ONNX Runtime network
            step) as ``fxmix serve`` and ``fxmix bench bridge`` use; False gives reproducible sessions (the
            default, what tests compare against the in-process API).
        pipeline: run the network one block behind (``Session(pipeline=...)``; None: = realtime).

    """
    model_arg: Any = None if isinstance(model, str) and model.lower() == "none" else model

    def factory(sample_rate: int, block_samples: int, n_tracks: int, prof: str | None) -> Any:
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
