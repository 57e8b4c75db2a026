"""Weights files: safetensors weights + a JSON sidecar, saved and loaded without pickles.

* :func:`save_model` / :func:`load_model`: ``model.safetensors`` + ``model.json``
  ``{"arch", "config", "sample_rate", "fxmix_version", "sha256", ...}``; the class comes from
  :data:`fxmix.model.registry.ARCHS` (no code runs on load); the hash is checked and a mismatch names the file.
* The file names of a model folder (weights, sidecar, model card, TorchScript and ONNX exports).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from fxmix.dsp.audio import atomic_path, write_text_atomic
from fxmix.dsp.constants import CLASSES, VERSION
from fxmix.dsp.errors import ConfigError, ModelLoadError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .params import count_parameters
from .registry import arch_name, get_arch, net_config_from_dict

WEIGHTS_NAME = "model.safetensors"
SIDECAR_NAME = "model.json"
CARD_NAME = "model_card.json"
TS_NAME = "model.ts"
ONNX_NAME = "model.onnx"
FORMAT = "fxmix-weights-1"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_weights(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, sidecar) for a folder, a .safetensors file or its .json sidecar."""
    path = Path(path)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
    elif path.suffix == ".json":
        weights = path.with_suffix(".safetensors")
    else:
        weights = path
    sidecar = weights.with_suffix(".json")
    if not weights.is_file():
        raise ModelLoadError(
            f"{weights}: weights file not found; pass a folder holding {WEIGHTS_NAME} + {SIDECAR_NAME} "
            "or the .safetensors file itself"
        )
    if not sidecar.is_file():
        raise ModelLoadError(
            f"{sidecar}: JSON sidecar missing next to {weights.name}; it names the arch/config"
        )
    return weights, sidecar


def save_model(
    path: str | os.PathLike, model: torch.nn.Module, *, config=None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` as safetensors weights + JSON sidecar, atomically.

    Args:
        path: a ``.safetensors`` file, or a folder (``model.safetensors`` + ``model.json`` inside).
        model: a network of :data:`fxmix.model.registry.ARCHS` (has ``config``).
        config: its config dataclass; default ``model.config``.
        extra: JSON-serialisable fields added to the sidecar (e.g. ``training``, ``metrics``, ``step``).

    Returns:
        The weights path. The sidecar is the same path with ``.json``.
    """
    path = Path(path)
    weights = path / WEIGHTS_NAME if path.suffix != ".safetensors" else path
    weights.parent.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else model.config
    arch = arch_name(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, tmp, metadata={"arch": arch, "format": FORMAT})
        digest = sha256_file(tmp)
    sidecar = {
        "format": FORMAT,
        "arch": arch,
        "config": config.to_dict(),
        "sample_rate": int(model.sample_rate),
        "n_stems": int(model.n_stems),
        "stems": list(CLASSES[: model.n_stems]),
        "latency_samples": int(model.latency_samples),
        "receptive_field_samples": int(model.receptive_field_samples),
        "n_parameters": int(count_parameters(model)),
        "fxmix_version": VERSION,
        "sha256": digest,
    }
    for key, value in (extra or {}).items():
        if key in sidecar:
            raise ConfigError(f"save_model extra key {key!r} would overwrite a sidecar field")
        sidecar[key] = value
    write_text_atomic(weights.with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n")
    return weights


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a weights file/folder (no weights loaded)."""
    _, sidecar = resolve_weights(path)
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{sidecar}: unreadable JSON sidecar: {exc}") from None
    for key in ("arch", "config", "sha256"):
        if key not in data:
            raise ModelLoadError(f"{sidecar}: sidecar lacks {key!r}; re-save the model with fxmix")
    return data


def load_model(path: str | os.PathLike, *, map_location: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a network saved by :func:`save_model` (eval mode). Returns ``(model, sidecar)``.

    Raises:
        ModelLoadError: missing files, hash mismatch (names the file and both hashes), unknown arch,
            missing/unexpected tensors.
    """
    weights, sidecar_path = resolve_weights(path)
    sidecar = read_sidecar(weights)
    digest = sha256_file(weights)
    if digest != sidecar["sha256"]:
        raise ModelLoadError(
            f"{weights}: sha256 {digest[:16]}... does not match {sidecar['sha256'][:16]}... recorded in "
            f"{sidecar_path.name}; the file is corrupt or was replaced, re-download or re-export it"
        )
    cls = get_arch(sidecar["arch"])
    try:
        config = net_config_from_dict(sidecar["arch"], sidecar["config"], where=str(sidecar_path))
    except ConfigError as exc:
        raise ModelLoadError(str(exc)) from None
    model = cls(config)
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{weights}: not a readable safetensors file: {exc}") from None
    missing, unexpected = (
        sorted(set(model.state_dict()) - set(state)),
        sorted(set(state) - set(model.state_dict())),
    )
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights}: tensors do not match arch {sidecar['arch']!r} with its config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{weights}: {exc}") from None
    return model.to(map_location).eval(), sidecar
