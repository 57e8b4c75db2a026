"""Weights files, release exports and the inference runtime.

* :func:`save_model` / :func:`load_model`: safetensors weights + JSON sidecar
  ``{"arch", "config", "sample_rate", "fxmix_version", "sha256", ...}``; the class comes from the registry
  (no pickles, no code runs on load); the hash is checked and a mismatch names the file.
* :func:`export_model`: a release folder with the weights, optional TorchScript (``model.ts``) and ONNX
  (``model.onnx``, dynamic batch and length axes), a parity check (eager vs TorchScript vs ONNX Runtime) and
  ``model_card.json``.
* :func:`load_runtime`: one object with ``.mix(stems) -> mix`` over any backend, chunked by
  :func:`fxmix.model.apply.mix_stems`.

Works for every registered architecture whose constructor takes its config dataclass and that exposes
``config``, ``sample_rate``, ``n_stems``, ``latency_samples``, ``receptive_field_samples`` and
``length_multiple``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fxmix.dsp.audio import atomic_path, write_text_atomic
from fxmix.dsp.constants import CLASSES
from fxmix.dsp.errors import ConfigError, ModelLoadError

from .apply import DEFAULT_CHUNK_S, DEFAULT_OVERLAP_S, mix_stems
from .config import net_config_from_dict
from .registry import get_arch

WEIGHTS_NAME = "model.safetensors"
SIDECAR_NAME = "model.json"
CARD_NAME = "model_card.json"
TS_NAME = "model.ts"
ONNX_NAME = "model.onnx"
FORMAT = "fxmix-weights-1"
#: Parity tolerance between eager, TorchScript and ONNX Runtime (max abs, full scale 1).
PARITY_TOL = 1e-4


def _version() -> str:
    from fxmix import __version__

    return __version__


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve_weights(path: str | os.PathLike) -> tuple[Path, Path]:
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
        model: a registered network (has ``arch_name`` and ``config``).
        config: its config dataclass; default ``model.config``.
        extra: JSON-serialisable fields added to the sidecar (e.g. ``training``, ``metrics``, ``step``).

    Returns:
        The weights path. The sidecar is the same path with ``.json``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    weights = path / WEIGHTS_NAME if path.suffix != ".safetensors" else path
    weights.parent.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else model.config
    arch = getattr(model, "arch_name", None)
    if arch is None:
        raise ConfigError(f"{type(model).__name__} is not a registered network (no arch_name); use @register")
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
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "fxmix_version": _version(),
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
    _, sidecar = _resolve_weights(path)
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights, sidecar_path = _resolve_weights(path)
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


def _example_input(model, seconds: float, seed: int = 0) -> torch.Tensor:
    n = int(round(seconds * model.sample_rate))
    n -= n % getattr(model, "length_multiple", 1)
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(1, model.n_stems, 2, max(n, getattr(model, "length_multiple", 1)), generator=g)


def export_torchscript(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Trace ``model`` (eval) to TorchScript; the length axis stays dynamic (checked by the parity test)."""
    path = Path(path)
    example = _example_input(model, 0.5)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(tmp)
    return path


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Export to ONNX with dynamic ``batch`` and ``samples`` axes (input ``stems``, output ``mix``)."""
    path = Path(path)
    example = _example_input(model, 0.5)
    with atomic_path(path, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            tmp,
            input_names=["stems"],
            output_names=["mix"],
            dynamic_axes={"stems": {0: "batch", 3: "samples"}, "mix": {0: "batch", 2: "samples"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def parity_report(
    model: torch.nn.Module, out_dir: str | os.PathLike, *, seconds: float = 10.0, seed: int = 0
) -> dict[str, Any]:
    """Max abs difference of each exported backend vs eager on one seeded input of ``seconds``."""
    out_dir = Path(out_dir)
    x = _example_input(model, seconds, seed)
    with torch.no_grad():
        ref = model(x).numpy()
    report: dict[str, Any] = {"seconds": seconds, "tolerance": PARITY_TOL}
    for backend, name in (("torchscript", TS_NAME), ("onnx", ONNX_NAME)):
        if (out_dir / name).is_file():
            fn = _load_backend(out_dir / name, backend)
            y = fn(x).numpy()
            report[f"{backend}_max_abs"] = float(np.max(np.abs(y - ref)))
    report["ok"] = all(v <= PARITY_TOL for k, v in report.items() if k.endswith("_max_abs"))
    return report


def export_model(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    torchscript: bool = False,
    onnx: bool = False,
    parity_s: float = 10.0,
) -> dict[str, Any]:
    """Turn a checkpoint (folder or .safetensors) into a release folder; returns the model card.

    The folder gets ``model.safetensors`` + ``model.json`` (always), ``model.ts`` / ``model.onnx`` when
    asked, and ``model_card.json`` with architecture, sample rate, latency, receptive field, training
    data, licence, metrics, file hashes and the parity figures.
    """
    model, sidecar = load_model(checkpoint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if Path(checkpoint).resolve() in (out_dir.resolve(), (out_dir / WEIGHTS_NAME).resolve()):
        raise ConfigError(f"{out_dir}: export folder is the checkpoint itself; choose another -o folder")
    keep = {k: v for k, v in sidecar.items() if k in ("training", "metrics", "step", "licence", "name")}
    weights = save_model(out_dir, model, extra=keep)
    files = {WEIGHTS_NAME: sha256_file(weights)}
    if torchscript:
        files[TS_NAME] = sha256_file(export_torchscript(model, out_dir / TS_NAME))
    if onnx:
        files[ONNX_NAME] = sha256_file(export_onnx(model, out_dir / ONNX_NAME))
    parity = parity_report(model, out_dir, seconds=parity_s) if (torchscript or onnx) else None
    card = {
        "name": sidecar.get("name", sidecar["arch"]),
        "arch": sidecar["arch"],
        "config": sidecar["config"],
        "n_parameters": sidecar.get("n_parameters"),
        "sample_rate": int(model.sample_rate),
        "input": f"stems float32 (batch, {model.n_stems}, 2, samples), samples a multiple of "
        f"{getattr(model, 'length_multiple', 1)}; stems {list(CLASSES[: model.n_stems])}, effect-normalized",
        "output": "mix float32 (batch, 2, samples), aligned with the input",
        "length_multiple": int(getattr(model, "length_multiple", 1)),
        "latency_samples": int(model.latency_samples),
        "receptive_field_samples": int(model.receptive_field_samples),
        "streaming": False,
        "inference": {
            "chunk_s": DEFAULT_CHUNK_S,
            "guard_samples": int(model.receptive_field_samples),
            "overlap_s": DEFAULT_OVERLAP_S,
        },
        "training_data": sidecar.get("training", "not recorded in the checkpoint"),
        "metrics": sidecar.get("metrics", {}),
        "licence": sidecar.get("licence", "MIT (code); weights: see training_data licences"),
        "files": files,
        "parity": parity,
        "fxmix_version": _version(),
        "exported_unix_s": int(time.time()),
    }
    write_text_atomic(out_dir / CARD_NAME, json.dumps(card, indent=2) + "\n")
    return card


def _load_backend(path: Path, backend: str):
    """A function tensor -> tensor running an exported file."""
    if backend == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_ts(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x)

        return run_ts
    if backend == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run_onnx(x: torch.Tensor) -> torch.Tensor:
            (y,) = session.run(["mix"], {"stems": x.detach().cpu().numpy().astype(np.float32)})
            return torch.from_numpy(y)

        return run_onnx
    raise ConfigError(f"unknown backend {backend!r}")


class Runtime:
    """A loaded mixing model behind one interface, whatever the backend.

    Attributes:
        sample_rate: Hz. latency_samples: output delay to compensate (0 for offline nets).
        receptive_field_samples, length_multiple, n_stems: as the network.
        backend: "onnx" | "torchscript" | "eager".

    streaming-safe: no (offline; :meth:`mix` chunks internally with guards).
    """

    def __init__(self, fn, info: dict[str, Any], backend: str):
        self._fn = fn
        self.backend = backend
        self.info = info
        self.sample_rate = int(info["sample_rate"])
        self.latency_samples = int(info.get("latency_samples", 0))
        self.receptive_field_samples = int(info["receptive_field_samples"])
        self.length_multiple = int(info.get("length_multiple", 1))
        self.n_stems = int(info.get("n_stems", 4))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(x)

    def mix(
        self,
        stems: np.ndarray,
        *,
        chunk_s: float = DEFAULT_CHUNK_S,
        overlap_s: float = DEFAULT_OVERLAP_S,
        batch_size: int = 1,
        progress: bool = False,
    ) -> np.ndarray:
        """Mix ``(n_stems, 2, n)`` normalized stems (any length) into a ``(2, n)`` float32 array."""
        y = mix_stems(
            self, stems, chunk_s=chunk_s, overlap_s=overlap_s, batch_size=batch_size, progress=progress
        )
        return y.numpy().astype(np.float32)


def load_runtime(path: str | os.PathLike, backend: str = "auto") -> Runtime:
    """Load an export folder (``model_card.json``) or a checkpoint (folder / .safetensors) for inference.

    Args:
        path: export folder, checkpoint folder or weights file.
        backend: "auto" (ONNX if exported, else TorchScript, else eager), "onnx", "torchscript", "eager".

    Raises:
        ModelLoadError: the requested backend's file is missing, or the weights fail to load.
    """
    if backend not in ("auto", "onnx", "torchscript", "eager"):
        raise ConfigError(f"backend {backend!r}: use auto, onnx, torchscript or eager")
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    card_path = folder / CARD_NAME
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    if backend == "auto":
        if card is not None and (folder / ONNX_NAME).is_file():
            backend = "onnx"
        elif card is not None and (folder / TS_NAME).is_file():
            backend = "torchscript"
        else:
            backend = "eager"
    if backend == "eager":
        model, sidecar = load_model(path)
        info = dict(sidecar, length_multiple=getattr(model, "length_multiple", 1))
        return Runtime(model, info, "eager")
    name = ONNX_NAME if backend == "onnx" else TS_NAME
    if card is None or not (folder / name).is_file():
        raise ModelLoadError(
            f"{folder}: no {name} with {CARD_NAME}; export it with `fxmix export CKPT -o {folder} --{backend}`"
        )
    expected = card.get("files", {}).get(name)
    if expected is not None and sha256_file(folder / name) != expected:
        raise ModelLoadError(f"{folder / name}: sha256 does not match {CARD_NAME}; re-export the model")
    return Runtime(_load_backend(folder / name, backend), card, backend)
