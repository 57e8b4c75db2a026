"""Training checkpoints: written whole, verified on resume, never rotated away while they are the last good one.

A checkpoint is ``OUT/checkpoints/step-NNNNNNN/``: ``model.safetensors`` + ``model.json`` (the sidecar records
the weights' sha256, :func:`fxmix.model.states.save_model`), ``optimizer.safetensors`` (optimizer tensors and
the torch RNG) and ``state.json`` (step, optimizer scalars, the optimizer file's sha256). The folder is built
under a temporary name and renamed into place (:func:`fxmix.dsp.audio.atomic_folder`), then ``latest.json``
is replaced atomically; weights or optimizer state holding NaN/inf are never written.

On resume every checkpoint is tried from the newest: hashes, readable files, finite tensors, names and shapes
of the configured network. The first that verifies is used; the ones skipped are named in a warning and moved
to ``rejected-step-NNNNNNN`` so they never shadow a good one again. A kill at any moment therefore leaves a
resumable run, and ``latest.json`` is a convenience for people, not a point of failure.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..dsp.audio import atomic_folder, write_text_atomic
from ..dsp.errors import ConfigError, FxmixError, ModelLoadError
from ..dsp.profile import read_json_file
from ..model.states import check_finite, load_model, save_model, sha256_file

log = logging.getLogger(__name__)

STATE_FORMAT = "fxmix-train-state-1"
CHECKPOINTS = "checkpoints"
LATEST_NAME = "latest.json"
STATE_NAME = "state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
_STEP_DIR = re.compile(r"step-(\d{7,})")


class CheckpointError(FxmixError):
    """A checkpoint folder does not verify (the message says which file and why)."""


# --------------------------------------------------------------------------- optimizer state as safetensors
def _optimizer_to_safetensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, float] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            key = f"state.{idx}.{name}"
            if torch.is_tensor(value):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = float(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_safetensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if not key.startswith("state."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta.get("scalars", {}).items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------------------------- writing
def checkpoint_dirs(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoints/step-NNNNNNN`` folder, newest first."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def has_checkpoints(out_dir: str | os.PathLike) -> bool:
    """Whether ``OUT`` holds a checkpoint folder or a ``latest.json`` (a run a fresh start must not overwrite)."""
    return bool(checkpoint_dirs(out_dir)) or (Path(out_dir) / CHECKPOINTS / LATEST_NAME).is_file()


def save_checkpoint(out_dir: Path, step: int, model, opt, state: dict, keep: int) -> Path:
    """Write ``checkpoints/step-NNNNNNN/`` whole, point ``latest.json`` at it and keep the newest ``keep``.

    Raises:
        FxmixError: the weights or optimizer state hold NaN/inf (training diverged; nothing is written and
            every earlier checkpoint is kept), or the folder just written does not verify.
    """
    root = Path(out_dir) / CHECKPOINTS
    final = root / f"step-{step:07d}"
    tensors, meta = _optimizer_to_safetensors(opt)
    try:
        check_finite({k: v for k, v in model.state_dict().items()}, f"training step {step}")
        check_finite(tensors, f"training step {step} (optimizer state)")
    except ModelLoadError as exc:
        good = [s for s, _ in checkpoint_dirs(out_dir)]
        raise FxmixError(
            f"{exc}: training diverged, no checkpoint written; the checkpoints of steps {good} are kept. "
            "Lower train.lr or train.grad_clip and resume with --resume"
        ) from None
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    with atomic_folder(final) as tmp:
        save_model(tmp, model, extra={"training_step": step})
        save_file(tensors, str(tmp / OPTIMIZER_NAME), metadata={"format": STATE_FORMAT})
        files = {OPTIMIZER_NAME: sha256_file(tmp / OPTIMIZER_NAME)}
        record = dict(state, step=step, optimizer=meta, files=files)
        write_text_atomic(tmp / STATE_NAME, json.dumps(record, indent=1) + "\n")
    _verify_files(final, step)  # what is on disk now, before anything older is removed
    write_text_atomic(root / LATEST_NAME, json.dumps({"step": step, "path": final.name}) + "\n")
    for _, old in checkpoint_dirs(out_dir)[max(1, keep) :]:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------------------------- reading
def _read_state(path: Path, step: int) -> dict:
    try:
        state = read_json_file(path / STATE_NAME, "checkpoint state")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    ok = isinstance(state, dict) and state.get("format") == STATE_FORMAT and state.get("step") == step
    if not ok or not isinstance(state.get("optimizer"), dict) or not isinstance(state.get("files", {}), dict):
        raise CheckpointError(f"{path / STATE_NAME}: not the state of step {step} (format {STATE_FORMAT})")
    return state


def _verify_files(path: Path, step: int) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(state, model weights, optimizer tensors) of a checkpoint whose files all verify.

    Raises:
        CheckpointError: a file is missing, truncated, corrupt (sha256), or holds NaN/inf.
    """
    state = _read_state(path, step)
    try:
        model, _ = load_model(path)  # sidecar, sha256, config bounds, shapes, finite weights
    except (ModelLoadError, ConfigError) as exc:
        raise CheckpointError(str(exc)) from None
    opt_file = path / OPTIMIZER_NAME
    expected = state.get("files", {}).get(OPTIMIZER_NAME)
    try:
        if expected is not None and sha256_file(opt_file) != expected:
            raise CheckpointError(f"{opt_file}: sha256 does not match {STATE_NAME}; the file is corrupt")
        tensors = load_file(str(opt_file))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{opt_file}: not a readable safetensors file ({exc})") from None
    try:
        check_finite({k: v for k, v in tensors.items() if k != "rng.torch_cpu"}, opt_file)
    except ModelLoadError as exc:
        raise CheckpointError(str(exc)) from None
    rng = tensors.get("rng.torch_cpu")
    if rng is None or rng.dtype != torch.uint8:
        raise CheckpointError(f"{opt_file}: lacks the torch RNG state")
    return state, model.state_dict(), tensors


def _restore(path: Path, step: int, model, opt) -> dict:
    """Verify the checkpoint and load it into ``model`` / ``opt``; restores the torch RNG. Returns its state."""
    state, weights, tensors = _verify_files(path, step)
    own = model.state_dict()
    bad = sorted(set(own) ^ set(weights)) or [k for k in own if own[k].shape != weights[k].shape]
    if bad:
        raise CheckpointError(f"{path}: tensors do not match the configured network: {bad[:5]}")
    model.load_state_dict(weights, strict=True)
    try:
        opt.load_state_dict(_optimizer_from_safetensors(tensors, state["optimizer"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path / STATE_NAME}: optimizer state does not fit the network ({exc})") from None
    torch.set_rng_state(tensors["rng.torch_cpu"])
    return state


def resume_checkpoint(out_dir: str | os.PathLike, model, opt, *, writer: bool = True) -> dict | None:
    """Load the newest checkpoint that verifies into ``model`` and ``opt``; None when there is none at all.

    Newer checkpoints that do not verify are named in a warning (with the step resumed from) and, by the
    ``writer`` process only (rank 0), renamed ``rejected-step-NNNNNNN``.

    Raises:
        ModelLoadError: checkpoints exist but none verifies (each one's fault is listed).
    """
    root = Path(out_dir) / CHECKPOINTS
    for stale in root.glob(".step-*.tmpdir") if writer else ():  # a write that a kill interrupted
        shutil.rmtree(stale, ignore_errors=True)
    problems: list[tuple[Path, str]] = []
    for step, path in checkpoint_dirs(out_dir):
        try:
            state = _restore(path, step, model, opt)
        except CheckpointError as exc:
            problems.append((path, str(exc)))
            continue
        if writer:
            for bad, why in problems:
                log.warning("train: %s does not verify (%s); kept as rejected-%s", bad.name, why, bad.name)
                os.replace(bad, bad.with_name(f"rejected-{bad.name}"))
            if problems:
                log.warning("train: resuming from the last checkpoint that verifies, %s", path.name)
            write_text_atomic(root / LATEST_NAME, json.dumps({"step": step, "path": path.name}) + "\n")
        return state
    if problems:
        listed = "; ".join(f"{p.name}: {why}" for p, why in problems)
        raise ModelLoadError(
            f"{root}: no checkpoint verifies ({listed}); start a new run in another out_dir "
            "(or move this folder away)"
        )
    return None
