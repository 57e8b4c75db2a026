"""Model folders without torch: file names, the sidecar's and model card's fields checked, weight hashes.

What a verb needs to know about a model before loading it (its architecture, training profile, sample rate) is
in its JSON sidecar; reading it here keeps torch out of commands that need only that (``fxmix normalize`` reads
the default model's training profile). :mod:`fxmix.model.states` loads and saves the weights themselves.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from fxmix.dsp.constants import CLASSES
from fxmix.dsp.errors import ConfigError, ModelLoadError
from fxmix.dsp.profile import read_json_file

from .config import SAMPLE_RATE_LIMITS

#: Architecture names a sidecar may declare (:data:`fxmix.model.registry.ARCHS` maps each to its class).
ARCH_NAMES = ("paper", "wave_unet", "causal", "console")
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
    if not isinstance(data["arch"], str) or data["arch"] not in ARCH_NAMES:
        raise _fail(where, "arch", f"one of {sorted(ARCH_NAMES)}", data["arch"], fix)
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
