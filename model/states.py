"""Weights files: safetensors weights + a JSON sidecar, saved and loaded without pickles.

* :func:`save_model` / :func:`load_model`: ``model.safetensors`` + ``model.json``
  ``{"arch", "config", "sample_rate", "fxmix_version", "sha256", ...}``; the class comes from
  :data:`fxmix.model.registry.ARCHS` (no code runs on load); the hash is checked and a mismatch names the file.
* :func:`read_sidecar` / :func:`read_card` validate a sidecar's / model card's fields (types, ranges) and
  :func:`load_model` checks the config against the architecture's bounds and the weights file's tensor shapes
  before any weights are read; weights holding NaN/inf are refused as the model's fault.
* :func:`verify_export_file`: an export (``model.onnx`` / ``model.ts``) must be listed in the card with its hash.
* The file names of a model folder (weights, sidecar, model card, TorchScript and ONNX exports).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from fxmix.dsp.audio import atomic_path, write_text_atomic
from fxmix.dsp.constants import CLASSES, VERSION
from fxmix.dsp.errors import ConfigError, ModelLoadError
from fxmix.dsp.profile import read_json_file
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import SAMPLE_RATE_LIMITS
from .params import count_parameters
from .registry import ARCHS, arch_name, get_arch, net_config_from_dict

WEIGHTS_NAME = "model.safetensors"
SIDECAR_NAME = "model.json"
CARD_NAME = "model_card.json"
TS_NAME = "model.ts"
ONNX_NAME = "model.onnx"
FORMAT = "fxmix-weights-1"

#: Longest receptive field, latency or chunk multiple a sidecar or card may declare, in seconds of audio.
MAX_CONTEXT_S = 60.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def _fail(where, key: str, what: str, value, fix: str) -> ModelLoadError:
    shown = "null" if value is None else repr(value)[:60]
    return ModelLoadError(f"{where}: {key!r} must be {what}, got {shown}; {fix}")


def _check_int(data: dict, key: str, lo: int, hi: int, where, fix: str, *, optional: bool = False) -> None:
    if optional and key not in data:
        return
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _fail(where, key, f"an integer in [{lo}, {hi}]", v, fix)


def _check_audio_fields(data: dict, where, fix: str) -> None:
    """sample_rate, latency, receptive field (and length multiple, stems when present): typed and bounded."""
    _check_int(data, "sample_rate", *SAMPLE_RATE_LIMITS, where, fix)
    most = int(MAX_CONTEXT_S * data["sample_rate"])
    for key in ("receptive_field_samples", "latency_samples"):
        _check_int(data, key, 0, most, where, fix, optional=key == "latency_samples")
    _check_int(data, "length_multiple", 1, most, where, fix, optional=True)
    _check_int(data, "n_stems", 1, len(CLASSES), where, fix, optional=True)


def validate_sidecar(data: Any, where: str | os.PathLike) -> dict[str, Any]:
    """Check a parsed sidecar's fields (types and ranges); returns it.

    Raises:
        ModelLoadError: names the file, the key and the fix.
    """
    fix = "re-save the model with fxmix (or re-export it)"
    if not isinstance(data, dict):
        raise ModelLoadError(f"{where}: not a JSON object; {fix}")
    for key in ("arch", "config", "sha256", "sample_rate", "receptive_field_samples"):
        if key not in data:
            raise ModelLoadError(f"{where}: sidecar lacks {key!r}; {fix}")
    if not isinstance(data["arch"], str) or data["arch"] not in ARCHS:
        raise _fail(where, "arch", f"one of {sorted(ARCHS)}", data["arch"], fix)
    if not isinstance(data["config"], dict):
        raise _fail(where, "config", "an object of network settings", data["config"], fix)
    if not isinstance(data["sha256"], str) or not _SHA256.fullmatch(data["sha256"]):
        raise _fail(where, "sha256", "64 lower-case hex digits", data["sha256"], fix)
    _check_audio_fields(data, where, fix)
    _check_int(data, "n_parameters", 0, 1 << 40, where, fix, optional=True)
    training = data.get("training")
    if isinstance(training, dict) and not isinstance(training.get("profile", ""), str):
        raise _fail(where, "training.profile", "a profile name (string)", training["profile"], fix)
    return data


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a weights file/folder (no weights loaded), its fields checked.

    Raises:
        ModelLoadError: missing, unreadable (not UTF-8, not JSON, too deep) or a field of the wrong type/range.
    """
    _, sidecar = resolve_weights(path)
    try:
        data = read_json_file(sidecar, "model sidecar")
    except ConfigError as exc:
        raise ModelLoadError(f"{exc}; re-save or re-export the model") from None
    return validate_sidecar(data, sidecar)


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The export folder's ``model_card.json``, its fields checked (what an ONNX/TorchScript runtime uses).

    Raises:
        ModelLoadError: unreadable or a field of the wrong type/range; names the file and the fix.
    """
    path = Path(folder) / CARD_NAME
    fix = f"re-export the model with `fxmix export CKPT -o {Path(folder)}`"
    try:
        card = read_json_file(path, "model card")
    except ConfigError as exc:
        raise ModelLoadError(f"{exc}; {fix}") from None
    if not isinstance(card, dict):
        raise ModelLoadError(f"{path}: not a JSON object; {fix}")
    _check_audio_fields(card, path, fix)
    files = card.get("files", {})
    if not isinstance(files, dict) or not all(
        isinstance(v, str) and _SHA256.fullmatch(v) for v in files.values()
    ):
        raise _fail(path, "files", "an object: file name -> sha256", files, fix)
    return card


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
