"""Weights files: safetensors weights + a JSON sidecar, saved and loaded without pickles.

* :func:`save_model` / :func:`load_model`: ``model.safetensors`` + ``model.json``
  ``{"arch", "config", "sample_rate", "fxmix_version", "sha256", ...}``; the class comes from
  :data:`fxmix.model.registry.ARCHS` (no code runs on load); the hash is checked and a mismatch names the file.
* :func:`read_sidecar` / :func:`read_card` validate a sidecar's / model card's fields (types, ranges) and
  :func:`load_model` checks the config against the architecture's bounds and the weights file's tensor shapes
  before any weights are read; weights holding NaN/inf are refused as the model's fault.
* :func:`verify_export_file`: an export (``model.onnx`` / ``model.ts``) must be listed in the card with its hash.
* The file names of a model folder (weights, sidecar, model card, TorchScript and ONNX exports) and the sidecar's
  checks live in :mod:`fxmix.model.sidecar` (no torch) and are re-exported here.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from fxmix.dsp.audio import atomic_path, write_text_atomic
from fxmix.dsp.constants import CLASSES, VERSION
from fxmix.dsp.errors import ConfigError, ModelLoadError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .params import count_parameters
from .registry import arch_name, get_arch, net_config_from_dict
from .sidecar import (
    CARD_NAME,
    FORMAT,
    MAX_CONTEXT_S,
    ONNX_NAME,
    SIDECAR_NAME,
    TS_NAME,
    WEIGHTS_NAME,
    read_card,
    read_sidecar,
    resolve_weights,
    sha256_file,
    validate_sidecar,
)

#: the torch-free names of :mod:`fxmix.model.sidecar` are re-exported here for existing importers
__all__ = [
    "CARD_NAME",
    "FORMAT",
    "MAX_CONTEXT_S",
    "ONNX_NAME",
    "SIDECAR_NAME",
    "TS_NAME",
    "WEIGHTS_NAME",
    "check_finite",
    "load_model",
    "read_card",
    "read_sidecar",
    "resolve_weights",
    "save_model",
    "sha256_file",
    "validate_sidecar",
    "verify_export_file",
]


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


def verify_export_file(folder: str | os.PathLike, name: str, card: dict[str, Any]) -> Path:
    """``folder/name`` exists, is listed in the card and matches its hash; the folder's weights are finite.

    Raises:
        ModelLoadError: names the file and the fix (re-export).
    """
    folder = Path(folder)
    path = folder / name
    fix = f"re-export the model with `fxmix export CKPT -o {folder}`"
    expected = card.get("files", {}).get(name)
    if expected is None:
        raise ModelLoadError(f"{path}: not listed with its sha256 in {CARD_NAME}; {fix}")
    if sha256_file(path) != expected:
        raise ModelLoadError(f"{path}: sha256 does not match {CARD_NAME}; the file is corrupt, {fix}")
    if (folder / WEIGHTS_NAME).is_file():
        try:
            check_finite(load_file(str(folder / WEIGHTS_NAME)), folder)
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(
                f"{folder / WEIGHTS_NAME}: not a readable safetensors file ({exc}); {fix}"
            ) from None
    return path


def check_finite(tensors: dict[str, torch.Tensor], where: str | os.PathLike) -> None:
    """Refuse weights holding NaN or inf: the model is broken, not its input or output.

    Raises:
        ModelLoadError: ``"<where>: weights hold NaN/inf (tensors ...); re-export or retrain"``.
    """
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelLoadError(f"{where}: weights hold NaN/inf (tensors {bad[:5]}); re-export or retrain the model")


def _header_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors header alone (no tensor data read)."""
    try:
        with safe_open(str(weights), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{weights}: not a readable safetensors file ({exc}); re-export it") from None


def _check_shapes(weights: Path, sidecar: dict, header: dict, model: torch.nn.Module) -> None:
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(own) - set(header)), sorted(set(header) - set(own))
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights}: tensors do not match arch {sidecar['arch']!r} with its config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}; the sidecar's config is not this file's"
        )
    bad = [f"{k} {header[k]} vs {own[k]}" for k in own if header[k] != own[k]]
    if bad:
        raise ModelLoadError(
            f"{weights}: tensor shapes do not match the sidecar's config ({bad[:3]}); the sidecar's config is "
            "not this file's, re-save the model"
        )


def _check_declared(sidecar_path: Path, sidecar: dict, model: torch.nn.Module) -> None:
    """The sidecar's figures (used to chunk audio) agree with the network its config builds."""
    for key in ("sample_rate", "receptive_field_samples", "latency_samples", "n_stems"):
        if key in sidecar and int(sidecar[key]) != int(getattr(model, key)):
            raise ModelLoadError(
                f"{sidecar_path}: {key} = {sidecar[key]} but its config builds a network with "
                f"{getattr(model, key)}; re-save the model with fxmix"
            )


def load_model(path: str | os.PathLike, *, map_location: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a network saved by :func:`save_model` (eval mode). Returns ``(model, sidecar)``.

    The sidecar's fields, the file hash, the config's bounds and the tensor shapes in the weights file's header
    are all checked before the weights are read; the weights must be finite.

    Raises:
        ModelLoadError: missing files, hash mismatch (names the file and both hashes), unknown arch, a sidecar
            field of the wrong type or out of range, missing/unexpected/misshapen tensors, NaN/inf weights.
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
        raise ModelLoadError(f"{exc}; re-save the model with fxmix") from None
    header = _header_shapes(weights)
    held = sum(math.prod(shape) for shape in header.values())
    if sidecar.get("n_parameters", held) > held:
        raise ModelLoadError(
            f"{sidecar_path}: n_parameters = {sidecar['n_parameters']} but {weights.name} holds {held} values; "
            "the sidecar is not this file's, re-save the model"
        )
    model = cls(config)
    _check_shapes(weights, sidecar, header, model)
    _check_declared(sidecar_path, sidecar, model)
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{weights}: not a readable safetensors file: {exc}") from None
    check_finite(state, weights.parent if weights.name == WEIGHTS_NAME else weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{weights}: {exc}") from None
    return model.to(map_location).eval(), sidecar
