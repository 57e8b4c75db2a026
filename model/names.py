"""Model names without torch: ``default``/``offline``/``causal``/``console`` -> a packaged kind, and the
profile a model was trained with, read from its sidecar alone (what every verb normalizes with unless told
otherwise; ``fxmix normalize`` needs nothing more of a model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fxmix.dsp.constants import REFERENCE_PROFILE

from . import default_model_path
from .sidecar import read_sidecar

#: The profile for inputs of a model whose sidecar does not name its training profile.
DEFAULT_PROFILE = REFERENCE_PROFILE

#: Kinds of packaged model (``model/weights/<kind>/``), each also a model name; ``console`` is the track-level
#: mixer (:class:`fxmix.model.console_runtime.MixerRunner`), the others mix the four class buses.
PACKAGED_KINDS = ("offline", "causal", "console")


def packaged_kind(spec: Any, *, streaming: bool = False) -> str | None:
    """The packaged model kind a model name means, or None for anything else (a path, a loaded network).

    ``default`` is the offline model, or the causal one for a streaming session; ``offline`` and ``causal``
    name their kind. Names are case-insensitive.
    """
    if not isinstance(spec, str):
        return None
    name = spec.lower()
    if name == "default":
        return "causal" if streaming else "offline"
    return name if name in PACKAGED_KINDS else None


def model_profile(runtime) -> str:
    """The profile a network was trained with (normalize its inputs the same way), else DEFAULT_PROFILE."""
    info = getattr(runtime, "info", None) or {}
    return str((info.get("training") or {}).get("profile") or DEFAULT_PROFILE)


def training_profile(spec, *, streaming: bool = False) -> str:
    """The profile the model ``spec`` names was trained with, read from its sidecar alone (no weights loaded):
    the profile every verb normalizes with unless told otherwise. ``none`` (and a model whose sidecar names no
    profile) -> :data:`DEFAULT_PROFILE`."""
    if spec is None or (isinstance(spec, str) and spec.lower() == "none"):
        return DEFAULT_PROFILE
    if not isinstance(spec, (str, Path)):
        return model_profile(spec)
    kind = packaged_kind(spec, streaming=streaming)
    path = Path(spec) if kind is None else default_model_path(kind)
    if path is None:
        return DEFAULT_PROFILE
    return str((read_sidecar(path).get("training") or {}).get("profile") or DEFAULT_PROFILE)
