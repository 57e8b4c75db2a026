"""Loading a mixing model for inference, and choosing one by name.

* :func:`load_runtime`: one object with ``.mix(stems) -> mix`` over any backend (the paper network's fast
  runtime, ONNX Runtime, TorchScript, eager), chunked by :func:`fxmix.model.apply.mix_stems`.
* One resolver of model names: ``none``, ``default`` (a packaged model), ``offline`` / ``causal`` (the packaged
  model of that kind) or a path. :func:`resolve_model` gives an offline :class:`Runtime`,
  :func:`resolve_streaming_model` the eager streaming network a real-time session steps, and
  :func:`resolve_model_path` the folder alone; they share :func:`fxmix.model.names.packaged_kind`.
* The names themselves and the profile a model was trained with: :mod:`fxmix.model.names` (no torch).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fxmix.dsp.errors import ConfigError, ModelLoadError

from . import default_model_path
from .apply import DEFAULT_CHUNK_S, DEFAULT_OVERLAP_S, mix_stems
from .names import packaged_kind
from .nets import PaperNet
from .paper_runtime import PaperRuntime
from .states import CARD_NAME, ONNX_NAME, TS_NAME, load_model, read_card, read_sidecar, verify_export_file

log = logging.getLogger(__name__)


#: Inference backends of :func:`load_runtime`.
BACKENDS = ("auto", "fast", "onnx", "torchscript", "eager")


def load_backend(path: Path, backend: str):
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
        import onnxruntime as ort  # imported on use: it costs start-up time and only ONNX runtimes need it

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # offline batch work: waiting threads sleep instead of spinning (spinning steals a shared core)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
        backend: "fast" | "onnx" | "torchscript" | "eager".
        mix_window, chunk_batch: the backend's, when it has them (see :mod:`fxmix.model.apply`).

    streaming-safe: no (offline; :meth:`mix` chunks internally with guards).
    """

    def __init__(self, fn, info: dict[str, Any], backend: str):
        self._fn = fn
        self.mix_window = getattr(fn, "mix_window", None)
        self.chunk_batch = int(getattr(fn, "chunk_batch", 1))
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
        batch_size: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Mix ``(n_stems, 2, n)`` normalized stems (any length) into a ``(2, n)`` float32 array."""
        y = mix_stems(
            self, stems, chunk_s=chunk_s, overlap_s=overlap_s, batch_size=batch_size, progress=progress
        )
        return np.ascontiguousarray(y.numpy())


def load_runtime(path: str | os.PathLike, backend: str = "auto") -> Runtime:
    """Load an export folder (``model_card.json``) or a checkpoint (folder / .safetensors) for inference.

    Args:
        path: export folder, checkpoint folder or weights file.
        backend: "auto" (the fast runtime for the paper network, else ONNX if exported, else TorchScript,
            else eager), "fast" (paper network only, :class:`fxmix.model.paper_runtime.PaperRuntime`),
            "onnx", "torchscript", "eager".

    Raises:
        ConfigError: unknown backend, or "fast" for another architecture.
        ModelLoadError: the requested backend's file is missing, or the weights fail to load.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: use one of {', '.join(BACKENDS)}")
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    card = read_card(folder) if (folder / CARD_NAME).is_file() else None
    if backend == "auto" and (card is None or card.get("arch") != "paper"):
        if card is not None and (folder / ONNX_NAME).is_file():
            backend = "onnx"
        elif card is not None and (folder / TS_NAME).is_file():
            backend = "torchscript"
    if backend in ("auto", "fast", "eager"):
        model, sidecar = load_model(path)
        info = dict(sidecar, length_multiple=getattr(model, "length_multiple", 1))
        if backend == "eager" or (backend == "auto" and not isinstance(model, PaperNet)):
            return Runtime(model, info, "eager")
        if not isinstance(model, PaperNet):
            raise ConfigError(
                f"{path}: backend 'fast' runs the paper network only, not {sidecar.get('arch')!r}"
            )
        return Runtime(PaperRuntime(model), info, "fast")
    name = ONNX_NAME if backend == "onnx" else TS_NAME
    if card is None or not (folder / name).is_file():
        raise ModelLoadError(
            f"{folder}: no {name} with {CARD_NAME}; export it with `fxmix export CKPT -o {folder} --{backend}`"
        )
    file = verify_export_file(folder, name, card)
    try:
        fn = load_backend(file, backend)
    except Exception as exc:  # ONNX Runtime and TorchScript raise their own types for a damaged file
        raise ModelLoadError(
            f"{file}: cannot be loaded by {backend} ({type(exc).__name__}); re-export it with "
            f"`fxmix export CKPT -o {folder} --{backend}`"
        ) from None
    return Runtime(fn, card, backend)


# ---------------------------------------------------------------- choosing a model by name


def resolve_model_path(spec: str, where: str = "model") -> Path:
    """A packaged model name -> its folder; anything else is a path.

    Raises:
        ConfigError: the named packaged model is not shipped (the message starts with ``where spec``).
    """
    kind = packaged_kind(spec)
    if kind is None:
        return Path(spec)
    path = default_model_path(kind)
    if path is None:
        raise ConfigError(f"{where} {spec}: no packaged {kind} model in this fxmix; pass a model folder")
    return path


def resolve_model(spec: str | None):
    """``none`` -> None (normalized-sum baseline); ``default`` -> the packaged model; else a path.

    Returns a :class:`Runtime` whose ``name`` says which model it is, or for ``console`` (or a console
    mixer's folder) a :class:`fxmix.model.console_runtime.MixerRunner` (``mixes_tracks``).
    """
    if spec is None or str(spec).lower() == "none":
        return None
    kind = packaged_kind(str(spec))
    if kind == "console" or (kind is None and _is_console_folder(Path(spec))):
        return _console_runner(spec, kind)
    if kind is None:
        runtime = load_runtime(spec)
        runtime.name = f"{runtime.info.get('arch')} model ({spec})"
        return runtime
    name = str(spec).lower()
    path = default_model_path(kind)
    if path is None:
        raise ConfigError(f"no {name} model is packaged with this fxmix; use --model none or --model PATH")
    runtime = load_runtime(path)
    what = "default offline" if name == "default" else f"packaged {kind}"
    runtime.name = f"{what} model ({runtime.info.get('arch')}, {path.name})"
    return runtime


def _is_console_folder(path: Path) -> bool:
    folder = path if path.is_dir() else path.parent
    if not (folder / "model.json").is_file():
        return False
    return read_sidecar(folder).get("arch") == "console"


def _console_runner(spec, kind: str | None):
    """The console mixer named ``console`` (packaged) or by its folder."""
    from .console_runtime import MixerRunner  # the console stack loads only when asked for

    path = resolve_model_path(str(spec)) if kind else Path(spec)
    folder = path if path.is_dir() else path.parent
    name = f"packaged console mixer ({folder.name})" if kind else f"console mixer ({spec})"
    return MixerRunner(folder, name=name)


def resolve_streaming_model(spec) -> tuple[Any, str]:
    """None | ``none`` | ``default`` | a path | a loaded network -> (eager streaming network or None, label).

    ``default`` is the packaged causal model; when none is shipped this warns and returns None (the session
    then sums the normalized buses). A loaded network may be wrapped in a :class:`Runtime`.

    Raises:
        ModelLoadError: the network has no ``step``/``init_state`` (not the ``causal`` architecture).
    """
    if spec is None or (isinstance(spec, str) and spec.lower() == "none"):
        return None, "none"
    kind = packaged_kind(spec, streaming=True)
    if kind is not None:
        path = default_model_path(kind)
        if path is None:
            log.warning("no packaged %s model; the session mixes by summing the normalized buses", kind)
            return None, f"none (no packaged {kind} model)"
        spec = path
    if isinstance(spec, (str, Path)):
        net, _ = load_model(spec)
        label = str(spec)
    else:
        net = getattr(spec, "_fn", spec)  # a Runtime wrapping an eager network
        label = type(net).__name__
    if not (hasattr(net, "step") and hasattr(net, "init_state")):
        raise ModelLoadError(
            f"{label}: not a streaming network (needs step/init_state: the 'causal' architecture); "
            "pass model=None for the normalized sum"
        )
    net.eval()
    return net, label
