"""Release exports of a mixing network: TorchScript, ONNX, a parity check and the model card.

* :func:`export_model`: a release folder with the weights, optional TorchScript (``model.ts``) and ONNX
  (``model.onnx``, dynamic batch and length axes), a parity check (eager vs TorchScript vs ONNX Runtime vs
  the paper network's fast runtime) and ``model_card.json``.
* Weights files are :mod:`fxmix.model.states`; loading an export for inference is :mod:`fxmix.model.runtime`.

Works for every registered architecture whose constructor takes its config dataclass and that exposes
``config``, ``sample_rate``, ``n_stems``, ``latency_samples``, ``receptive_field_samples`` and
``length_multiple``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fxmix.dsp.audio import atomic_path, write_text_atomic
from fxmix.dsp.constants import CLASSES, VERSION
from fxmix.dsp.errors import ConfigError

from .apply import DEFAULT_CHUNK_S, DEFAULT_OVERLAP_S
from .nets import PaperNet
from .paper_runtime import PaperRuntime
from .runtime import load_backend
from .states import (
    CARD_NAME,
    ONNX_NAME,
    TS_NAME,
    WEIGHTS_NAME,
    load_model,
    save_model,
    sha256_file,
)

#: Parity tolerance between eager, TorchScript and ONNX Runtime (max abs, full scale 1).
PARITY_TOL = 1e-4


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
    if isinstance(model, PaperNet):  # the runtime fxmix mixes with by default
        report["fast_max_abs"] = float(np.max(np.abs(PaperRuntime(model)(x).numpy() - ref)))
    for backend, name in (("torchscript", TS_NAME), ("onnx", ONNX_NAME)):
        if (out_dir / name).is_file():
            fn = load_backend(out_dir / name, backend)
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
        "fxmix_version": VERSION,
        "exported_unix_s": int(time.time()),
    }
    write_text_atomic(out_dir / CARD_NAME, json.dumps(card, indent=2) + "\n")
    return card
