"""Training loop: normalized-stem crops -> mixing network -> stereo-invariant loss against the wet mixture.

* Data: the preprocessed cache (:mod:`fxmix.training.preprocess`), memory-mapped; each step draws random crops
  (song order = concatenated random permutations, so every song is seen before any repeats). Item ``g`` of the
  global stream is a pure function of ``(seed, g)``, so a resumed run sees exactly the batches it would have seen.
* Augmentation: L/R swap of inputs and target together (a real swap, unlike the reference's no-op, spec §8) and
  a random gain applied to inputs and target together.
* Precision: bf16 autocast on CUDA (``amp = true``), fp32 on CPU; the losses always run in fp32.
* Optimizer: Adam with AMSGrad, L2 weight decay, gradient-norm clipping, linear warm-up then cosine decay.
  Steps with a non-finite loss or gradient are skipped and counted (``skipped`` column).
* Checkpoints every ``checkpoint_every`` steps (:mod:`fxmix.training.checkpoints`): written whole, with the
  sha256 of each file; ``--resume`` continues from the newest one that verifies (hashes, finite weights), so a
  kill at any moment loses at most ``checkpoint_every`` steps. ``best/`` and ``final/`` are replaced whole.
* Validation every ``steps_per_epoch`` steps on fixed crops of the valid split, next to the normalized-sum
  baseline on the same crops; the best model (lowest validation loss) is kept in ``OUT/best/``, the last in
  ``OUT/final/``.
* Logs: ``OUT/train_log.csv``, ``OUT/valid_log.csv`` and TensorBoard event files in ``OUT/tb/``
  (:mod:`fxmix.training.tfevents`; tensorboard itself is not needed).
* Distributed: launched by ``torchrun`` (``WORLD_SIZE``/``RANK`` in the environment), the network is wrapped in
  ``torch.nn.parallel.DistributedDataParallel`` with the ``gloo`` backend on CPU and ``nccl`` on CUDA; each rank
  draws its own items of the global stream; rank 0 preprocesses, validates, logs and writes checkpoints.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm import tqdm

from ..dsp.audio import atomic_folder, write_text_atomic
from ..dsp.errors import ConfigError, ModelLoadError
from ..model.losses import ClassBalanceLoss, get_loss
from ..model.states import resolve_weights, save_model
from .checkpoints import STATE_FORMAT, checkpoint_dirs, has_checkpoints, resume_checkpoint, save_checkpoint
from .config import TrainConfig, build_network
from .preprocess import PROFILE_NAME, CachedSplit, preprocess, read_manifest
from .tfevents import EventWriter

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ("step", "epoch", "lr", "loss", "grad_norm", "skipped", "examples_per_s", "wall_s")
VALID_COLUMNS = ("step", "epoch", "valid_loss", "valid_loss_normalized_sum", "best")
_CROP_STREAM = 1_000_003  # sub-stream id of crop/augmentation draws (song order uses the epoch number)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def _pick_device(cfg: TrainConfig) -> str:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


# ------------------------------------------------------------------------------------------------ data
class CropSampler:
    """Deterministic random crops of a :class:`CachedSplit`.

    Item ``g`` (0, 1, 2, ... over all ranks and steps) is song ``perm_k[g mod n]`` with ``k = g // n`` and
    ``perm_k`` a seeded permutation, cropped at a seeded uniform start, with a seeded L/R swap and gain.
    """

    def __init__(self, split: CachedSplit, crop_samples: int, seed: int, swap_prob: float, gain_db: float):
        self.split, self.crop, self.seed = split, int(crop_samples), int(seed)
        self.swap_prob, self.gain_db = float(swap_prob), float(gain_db)
        self._perm_cache: dict[int, np.ndarray] = {}

    def _perm(self, k: int) -> np.ndarray:
        if k not in self._perm_cache:
            self._perm_cache = {k: np.random.default_rng([self.seed, k]).permutation(len(self.split))}
        return self._perm_cache[k]

    def item(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(stems (4, 2, crop), target (2, crop)) float32 for global item ``g``."""
        n = len(self.split)
        song = int(self._perm(g // n)[g % n])
        rng = np.random.default_rng([self.seed, _CROP_STREAM, g])
        arr = self.split.arrays[song]
        length = arr.shape[-1]
        start = int(rng.integers(0, max(1, length - self.crop + 1)))
        x = np.asarray(arr[:, :, start : start + self.crop], dtype=np.float32)
        if x.shape[-1] < self.crop:
            x = np.pad(x, ((0, 0), (0, 0), (0, self.crop - x.shape[-1])))
        if rng.random() < self.swap_prob:
            x = x[:, ::-1, :]
        gain = 10.0 ** (rng.uniform(-self.gain_db, self.gain_db) / 20.0) if self.gain_db > 0 else 1.0
        x = np.ascontiguousarray(x * np.float32(gain))
        return x[:4], x[4]

    def batch(self, step: int, rank: int, world: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, 4, 2, T) and targets (B, 2, T) of ``rank`` at ``step``."""
        first = (step * world + rank) * batch_size
        items = [self.item(first + j) for j in range(batch_size)]
        return torch.from_numpy(np.stack([a for a, _ in items])), torch.from_numpy(
            np.stack([b for _, b in items])
        )


def valid_crops(split: CachedSplit, crop_samples: int, per_song: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, evenly spaced validation crops: (N, 4, 2, T) inputs and (N, 2, T) targets."""
    xs = []
    for arr in split.arrays:
        length = arr.shape[-1]
        starts = np.linspace(0, max(0, length - crop_samples), per_song).astype(int)
        for s in sorted(set(int(v) for v in starts)):
            x = np.asarray(arr[:, :, s : s + crop_samples], dtype=np.float32)
            if x.shape[-1] < crop_samples:
                x = np.pad(x, ((0, 0), (0, 0), (0, crop_samples - x.shape[-1])))
            xs.append(x)
    stack = torch.from_numpy(np.stack(xs))
    return stack[:, :4].contiguous(), stack[:, 4].contiguous()


# ------------------------------------------------------------------------------------------------ logs
def _truncate_csv(path: Path, columns: tuple[str, ...], max_step: int) -> None:
    """Create ``path`` with a header, or drop rows logged after ``max_step`` (steps a killed run lost)."""
    if not path.is_file():
        write_text_atomic(path, ",".join(columns) + "\n")
        return
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        rows = [r for r in csv.reader(fh)][1:]
    kept = [r for r in rows if _whole_row(r, len(columns)) and int(r[0]) <= max_step]
    lines = [",".join(columns)] + [",".join(r) for r in kept]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _whole_row(row: list[str], n: int) -> bool:
    """A row with ``n`` numeric fields; a row a kill cut short fails this and is dropped (its step is re-done)."""
    if len(row) != n or not row[0].isdigit():
        return False
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def _append_csv(path: Path, columns: tuple[str, ...], row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(",".join(_fmt(row[c]) for c in columns) + "\n")


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def read_csv_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a train/valid CSV log as floats."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


# ------------------------------------------------------------------------------------------------ train
def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for ``step``: linear warm-up, then cosine from ``lr`` to ``lr * lr_final_ratio``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cosine_lr(cfg.lr, cfg.lr_final_ratio, step, cfg.warmup_steps, cfg.steps)


def cosine_lr(lr: float, final_ratio: float, step: int, start: int, end: int) -> float:
    """``lr`` until ``start``, then a half cosine to ``lr * final_ratio`` at ``end`` (held after it)."""
    if step < start:
        return lr
    t = min(1.0, (step - start) / max(1, end - start))
    return lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


class Objective(torch.nn.Module):
    """The training objective: the configured mix loss, plus ``balance_weight`` × the class level-balance loss.

    Called as ``objective(pred, target, stems)`` with pred/target (B, 2, T) and stems (B, C, 2, T).
    """

    def __init__(self, mix_loss: torch.nn.Module, balance_weight: float = 0.0):
        super().__init__()
        self.mix_loss, self.balance_weight = mix_loss, float(balance_weight)
        self.balance = ClassBalanceLoss() if self.balance_weight > 0 else None

    def forward(self, pred: torch.Tensor, target: torch.Tensor, stems: torch.Tensor) -> torch.Tensor:
        loss = self.mix_loss(pred, target)
        if self.balance is not None:
            loss = loss + self.balance_weight * self.balance(pred, target, stems)
        return loss


def _evaluate_valid(model, loss_fn, crops, batch_size: int, device: str, amp: bool) -> float:
    x_all, y_all = crops
    total, n = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, x_all.shape[0], batch_size):
            x, y = x_all[i : i + batch_size].to(device), y_all[i : i + batch_size].to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
                pred = model(x)
            total += float(loss_fn(pred.float(), y, x)) * x.shape[0]
            n += x.shape[0]
    model.train(was_training)
    return total / max(1, n)


def warm_start(model: torch.nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy the tensors of the saved model at ``path`` into ``model``; returns the names left as initialised.

    Raises:
        ConfigError: the file cannot be read, it holds tensors ``model`` does not have, or shapes differ.
    """
    try:
        weights, _ = resolve_weights(path)
        state = load_file(str(weights))
    except (SafetensorError, OSError, ModelLoadError) as exc:
        raise ConfigError(f"train.init_from = {str(path)!r}: cannot load its weights ({exc})") from None
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ConfigError(
            f"train.init_from = {str(path)!r}: tensors {unexpected[:5]} do not exist in the configured network; "
            "warm-start only from the same architecture"
        )
    bad = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise ConfigError(
            f"train.init_from = {str(path)!r}: shapes differ for {bad[:5]}; use the same model overrides"
        )
    model.load_state_dict(state, strict=False)
    fresh = sorted(set(own) - set(state))
    log.info("train: warm start from %s (%d tensors; fresh: %s)", weights, len(state), fresh or "none")
    return fresh


def _baseline_valid(loss_fn, crops, batch_size: int) -> float:
    x_all, y_all = crops
    total = 0.0
    with torch.no_grad():
        for i in range(0, x_all.shape[0], batch_size):
            x, y = x_all[i : i + batch_size], y_all[i : i + batch_size]
            total += float(loss_fn(x.sum(dim=1), y, x)) * x.shape[0]
    return total / max(1, x_all.shape[0])


@dataclass
class _Run:
    """What one training run holds between steps (built by :func:`train`'s setup helpers)."""

    cfg: TrainConfig
    info: DistInfo
    device: str
    dev_kind: str
    amp: bool
    out: Path
    model: torch.nn.Module  # DistributedDataParallel-wrapped when world > 1
    core: torch.nn.Module  # the network itself
    loss_fn: Objective
    opt: torch.optim.Optimizer
    sampler: CropSampler
    crops: tuple[torch.Tensor, torch.Tensor] | None
    best: float = math.inf
    skipped: int = 0
    baseline: float = math.nan
    training_info: dict = field(default_factory=dict)
    writer: EventWriter | None = None

    @property
    def train_csv(self) -> Path:
        return self.out / "train_log.csv"

    @property
    def valid_csv(self) -> Path:
        return self.out / "valid_log.csv"


def train(
    cfg: TrainConfig, *, resume: bool = False, progress: bool = True, stop_after: int | None = None
) -> dict:
    """Run (or resume) training. Returns ``{"model", "step", "best_valid", "out_dir", ...}``.

    Args:
        cfg: the run's configuration.
        resume: continue from ``OUT/checkpoints/latest.json`` (a fresh start when there is none).
        progress: tqdm bar on rank 0.
        stop_after: stop (with a checkpoint) after this many steps *of this call* (for tests/time limits).

    Raises:
        ConfigError: ``OUT`` already holds checkpoints and ``resume`` is False (never overwritten), bad config.
    """
    info, device, dev_kind, amp = _setup_device(cfg)
    out = Path(cfg.out_dir)
    if has_checkpoints(out) and not resume:
        raise ConfigError(f"{out} already holds checkpoints; pass --resume or another out_dir")
    _prepare_cache(cfg, info, out, progress)
    run, n_train_songs = _setup_run(cfg, info, device, dev_kind, amp, out, warm=not checkpoint_dirs(out))
    start = 0
    state = resume_checkpoint(out, run.core, run.opt, writer=info.main) if resume else None
    if state is not None:
        start, run.best = int(state["step"]), float(state.get("best_valid", math.inf))
        run.skipped = int(state.get("skipped", 0))
        log.info("train: resumed from %s at step %d", out / "checkpoints", start)
    _open_logs(run, start, n_train_songs)

    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    bar = tqdm(total=end - start, desc="train", unit="step", disable=not (progress and info.main))
    window = _Window(time.perf_counter())
    t0 = window.t
    step = start
    while step < end:
        lr = lr_at(cfg, step)
        loss, grad_norm = _train_step(run, step, lr)
        if loss is not None:
            window.add(loss)
        else:
            run.skipped += 1
        step += 1
        bar.update(1)
        if info.main and (step % cfg.log_every == 0 or step == end):
            mean_loss = _log_train(run, step, lr, grad_norm, window, t0)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
        if info.main and run.crops is not None and (step % cfg.steps_per_epoch == 0 or step == cfg.steps):
            _validate(run, step)
        if info.main and (step % cfg.checkpoint_every == 0 or step == end):
            state = {"format": STATE_FORMAT, "best_valid": run.best, "skipped": run.skipped}
            save_checkpoint(out, step, run.core, run.opt, state, cfg.keep_checkpoints)
        if step % cfg.checkpoint_every == 0:
            _barrier(info)
    bar.close()
    if info.main:
        if step >= cfg.steps:
            _save_release(out / "final", run.core, run.training_info, step, None, run.baseline)
        run.writer.close()
    _barrier(info)
    return {
        "model": run.core,
        "step": step,
        "best_valid": run.best,
        "baseline_valid": run.baseline,
        "out_dir": out,
        "skipped": run.skipped,
        "rank": info.rank,
        "world": info.world,
    }


def _setup_device(cfg: TrainConfig) -> tuple[DistInfo, str, str, bool]:
    """(distributed info, torch device, device kind "cuda" | "cpu", bf16 autocast on) for this process."""
    device = _pick_device(cfg)
    info = _init_distributed(device)
    if device == "cuda":
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(info.local_rank)
    dev_kind = "cuda" if device.startswith("cuda") else "cpu"
    amp = bool(cfg.amp and dev_kind == "cuda")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return info, device, dev_kind, amp


def _prepare_cache(cfg: TrainConfig, info: DistInfo, out: Path, progress: bool) -> None:
    """Rank 0 builds (or completes) the normalized-stem cache and records the config; the others wait."""
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        preprocess(
            cfg.data_root,
            cfg.cache_dir,
            profile=cfg.profile,
            splits=("train", "valid"),
            stages=cfg.stages,
            input_source=cfg.input_source,
            dtype=cfg.cache_dtype,
            seed=0,  # normalization seed (only the reverb stage is random); independent of train.seed
            jobs=cfg.preprocess_jobs,
            progress=progress,
        )
        write_text_atomic(out / "train_config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    _barrier(info)


def _build_model(cfg: TrainConfig, warm: bool) -> tuple[torch.nn.Module, str]:
    """The seeded network (warm-started from ``init_from`` on a fresh run), with ``train_only`` applied."""
    torch.manual_seed(cfg.seed)
    model, arch, _ = build_network(cfg)
    if cfg.init_from and warm:
        warm_start(model, cfg.init_from)
    if cfg.train_only:
        trained = [n for n, p in model.named_parameters() if n.startswith(tuple(cfg.train_only))]
        if not trained:
            raise ConfigError(
                f"train.train_only = {list(cfg.train_only)}: matches no parameter of the network"
            )
        for n, p in model.named_parameters():
            p.requires_grad_(n in trained)
        log.info("train: training only %s", trained)
    return model, arch


def _crop_samples(core: torch.nn.Module, seconds: float) -> int:
    multiple = int(getattr(core, "length_multiple", 1))
    return max(multiple, int(round(seconds * core.sample_rate)) // multiple * multiple)


def _setup_run(
    cfg: TrainConfig, info: DistInfo, device: str, dev_kind: str, amp: bool, out: Path, *, warm: bool
) -> tuple[_Run, int]:
    """Network, objective, optimizer, training sampler and (rank 0) validation crops. Returns the run and
    the number of training songs."""
    core, arch = _build_model(cfg, warm)
    core.to(device).train()
    model = core
    if info.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            core, device_ids=[info.local_rank] if dev_kind == "cuda" else None
        )
    loss_fn = Objective(get_loss(cfg.loss, pre_emphasis=tuple(cfg.loss_pre_emphasis)), cfg.balance_weight)
    loss_fn = loss_fn.to(device)
    opt = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        amsgrad=True,
    )
    train_split = CachedSplit(cfg.cache_dir, "train")
    sampler = CropSampler(train_split, _crop_samples(core, cfg.crop_s), cfg.seed, cfg.swap_prob, cfg.gain_db)
    crops = None
    if info.main:
        try:
            valid_split = CachedSplit(cfg.cache_dir, "valid")
            crops = valid_crops(valid_split, _crop_samples(core, cfg.valid_crop_s), cfg.valid_crops_per_song)
        except ConfigError as exc:
            log.warning("train: no validation (%s)", exc)
    run = _Run(cfg, info, device, dev_kind, amp, out, model, core, loss_fn, opt, sampler, crops)
    run.training_info = {"config": cfg.to_dict(), "arch": arch}
    return run, len(train_split)


def _open_logs(run: _Run, start: int, n_train_songs: int) -> None:
    """Rank 0: CSV logs cut back to ``start`` and the event writer; all ranks: the validation baseline and
    the training record saved with every release."""
    cfg = run.cfg
    if run.info.main:
        _truncate_csv(run.train_csv, TRAIN_COLUMNS, start)
        _truncate_csv(run.valid_csv, VALID_COLUMNS, start)
        run.writer = EventWriter(run.out / "tb")
    if run.crops is not None:
        run.baseline = _baseline_valid(run.loss_fn, run.crops, cfg.batch_size)
    manifest = read_manifest(cfg.cache_dir)
    run.training_info.update(
        {
            "data_root": str(cfg.data_root),
            "input_source": cfg.input_source,
            "profile": cfg.profile,
            "profile_sha256": manifest["spec"]["profile_sha256"],
            "train_songs": n_train_songs,
            "world_size": run.info.world,
        }
    )


@dataclass
class _Window:
    """Training loss accumulated since the last log line."""

    t: float
    loss: float = 0.0
    n: int = 0

    def add(self, loss: float) -> None:
        self.loss += loss
        self.n += 1


def _train_step(run: _Run, step: int, lr: float) -> tuple[float | None, float]:
    """One optimizer step on this rank's batch of ``step``. Returns (loss, or None when the step was skipped
    for a non-finite loss or gradient on any rank; gradient norm)."""
    cfg, info = run.cfg, run.info
    for g in run.opt.param_groups:
        g["lr"] = lr
    x, y = run.sampler.batch(step, info.rank, info.world, cfg.batch_size)
    x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
    with torch.autocast(device_type=run.dev_kind, dtype=torch.bfloat16, enabled=run.amp):
        pred = run.model(x)
    loss = run.loss_fn(pred.float(), y, x)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip))
    ok = math.isfinite(float(loss.detach())) and math.isfinite(grad_norm)
    if info.world > 1:  # every rank must agree to skip, or DDP replicas diverge
        flag = torch.tensor([1.0 if ok else 0.0], device=run.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        ok = bool(flag.item() > 0)
    if not ok:
        return None, grad_norm
    run.opt.step()
    return float(loss.detach()), grad_norm


def _log_train(run: _Run, step: int, lr: float, grad_norm: float, window: _Window, t0: float) -> float:
    """Write the training log row of ``step`` (mean loss over the window) and start a new window."""
    cfg = run.cfg
    now = time.perf_counter()
    mean_loss = window.loss / max(1, window.n)
    row = {
        "step": step,
        "epoch": step / cfg.steps_per_epoch,
        "lr": lr,
        "loss": mean_loss,
        "grad_norm": grad_norm,
        "skipped": run.skipped,
        "examples_per_s": window.n * cfg.batch_size * run.info.world / max(1e-9, now - window.t),
        "wall_s": now - t0,
    }
    _append_csv(run.train_csv, TRAIN_COLUMNS, row)
    run.writer.add_scalar("train/loss", mean_loss, step)
    run.writer.add_scalar("train/lr", lr, step)
    run.writer.add_scalar("train/grad_norm", grad_norm, step)
    window.loss, window.n, window.t = 0.0, 0, now
    return mean_loss


def _validate(run: _Run, step: int) -> None:
    """Validation loss at ``step``; a new best is saved to ``OUT/best/``."""
    cfg = run.cfg
    v = _evaluate_valid(run.core, run.loss_fn, run.crops, cfg.batch_size, run.device, run.amp)
    is_best = v < run.best
    if is_best:
        run.best = v
        _save_release(run.out / "best", run.core, run.training_info, step, v, run.baseline)
    _append_csv(
        run.valid_csv,
        VALID_COLUMNS,
        {
            "step": step,
            "epoch": step / cfg.steps_per_epoch,
            "valid_loss": v,
            "valid_loss_normalized_sum": run.baseline,
            "best": int(is_best),
        },
    )
    run.writer.add_scalar("valid/loss", v, step)
    run.writer.add_scalar("valid/loss_normalized_sum", run.baseline, step)


def _save_release(
    folder: Path, model, training_info: dict, step: int, valid: float | None, baseline: float
) -> None:
    extra = {
        "training": dict(training_info, step=step),
        "metrics": {"valid_loss": valid, "valid_loss_normalized_sum": baseline},
    }
    with atomic_folder(folder) as tmp:
        save_model(tmp, model, extra=extra)


def profile_of_cache(cache_dir: str | os.PathLike) -> Path:
    """Path of the profile a cache (and a model trained on it) was normalized with."""
    return Path(cache_dir) / PROFILE_NAME
