"""Mixing networks, losses, chunked inference and export (``fxmix.model``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def default_model_path(kind: str = "offline") -> Path | None:
    """The packaged default model folder (``weights/<kind>/``) or None when none is shipped."""
    p = Path(str(resources.files("fxmix.model").joinpath("weights", kind)))
    return p if (p / "model.json").is_file() else None
