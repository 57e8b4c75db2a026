"""Training the console mixer (:class:`fxmix.model.mixer.ConsoleMixer`) on corpus v2 sessions.

One step: a batch of session crops (:mod:`fxmix.training.console_data`, tracks normalized to their class
targets) -> features -> the network -> :class:`ConsoleParams` -> :func:`render_console` -> losses:

- ``mrstft``: sum/difference multi-resolution STFT loss (spectral convergence + log magnitude,
  :class:`fxmix.model.losses.MultiResolutionSumDiffLoss`) of the rendered mix against the sum of the
  engineer's wet tracks (the mix before the master; see :mod:`fxmix.training.console_data`);
- ``balance``: per track, its level relative to the mix (dB of mean power, the track after fader and pan
  against the rendered mix) against the same for the wet track against the wet sum, mean absolute error in
  dB / 10 over the tracks that play in the crop (within :data:`ACTIVE_DB` of the mix);
- ``param``: where the engineer's decisions are known, the effective fader (track gain + master gain) against
  the gain that puts the normalized track at the engineer's level, in dB / 10, and the pan (L1).

Runs are resumable (``resume=True`` continues from ``OUT/checkpoints``), checkpoints are safetensors
(:mod:`fxmix.training.checkpoints`), the log is ``OUT/log.csv``, the best validation weights ``OUT/best``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fxmix.dsp.audio import write_text_atomic
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import load_profile
from fxmix.model.config import MixerConfig
from fxmix.model.console import ConsoleParams, render_console_stages
from fxmix.model.console.bus import profile_targets, track_curves
from fxmix.model.console.exciter import track_excitation
from fxmix.model.console.transient import track_transient_gains
from fxmix.model.losses import MultiResolutionSumDiffLoss
from fxmix.model.mixer import ConsoleMixer, predict_units, unit_slice
from fxmix.model.states import save_model

from .checkpoints import STATE_FORMAT, has_checkpoints, resume_checkpoint, save_checkpoint
from .console_data import Session, crop_batch, load_sessions, prepare_corpus
from .train import cosine_lr

log = logging.getLogger(__name__)

#: a track counts in the balance term where its target level is within this of the mix (dB)
ACTIVE_DB = 45.0
_EPS = 1e-10
LOG_FIELDS = ("step", "loss", "mrstft", "balance", "param", "lr", "cpu_s")


@dataclass(frozen=True)
class ConsoleTrainConfig:
    """Settings of a console training run (TOML tables ``[data]``, ``[train]``, ``[loss]``, ``[net]``)."""

    corpus: str = ""
    cache: str = ""
    profile: str = "musdb18-reference"
    crop_s: float = 2.0
    max_tracks: int = 24
    out_dir: str = "runs/console"
    steps: int = 400
    batch: int = 4
    lr: float = 5e-4
    lr_final_ratio: float = 1.0  # 1: constant; else a half cosine from decay_from to steps, to lr * this
    decay_from: int = 0
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    valid_every: int = 50
    checkpoint_every: int = 50
    keep: int = 2
    threads: int = 1
    seed: int = 0
    init_from: str = ""  # a saved console mixer whose weights a new run starts from (see init_weights)
    init_neutral: tuple = ()  # console parameters (UNIT_LAYOUT names) that start neutral after init_from
    fft_sizes: tuple = (4096, 1024, 256)
    w_mrstft: float = 1.0
    w_balance: float = 1.0
    w_param: float = 0.5
    net: MixerConfig = MixerConfig()

    @classmethod
    def from_toml(cls, path: str | Path, overrides: dict | None = None) -> ConsoleTrainConfig:
        """Read a console training TOML; unknown keys raise :class:`ConfigError` naming the file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the console training config: {exc}") from None
        if data.get("kind") != "console":
            raise ConfigError(f'{path}: kind = "console" missing (a console mixer training config)')
        flat = {k: v for table in ("data", "train", "loss") for k, v in data.get(table, {}).items()}
        flat.update(overrides or {})
        names = {f.name for f in dataclasses.fields(cls)} - {"net"}
        unknown = sorted(set(flat) - names)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(names)}")
        for key in ("fft_sizes", "init_neutral"):
            if key in flat:
                flat[key] = tuple(flat[key])
        net = MixerConfig.from_dict(data.get("net", {}), where=f"{path} [net]")
        cfg = cls(**flat, net=net)
        if not cfg.corpus and not cfg.cache:
            raise ConfigError(f"{path}: set data.corpus (a `fxmix data build` folder) or data.cache")
        return cfg

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["net"] = self.net.to_dict()
        d["fft_sizes"], d["init_neutral"] = list(self.fft_sizes), list(self.init_neutral)
        return d


CONFIG_DIR = Path(__file__).parent / "configs"


def console_config_path(name_or_path: str) -> Path | None:
    """The TOML of a console training config (a path, or a shipped name such as ``console-small``), or None
    when ``name_or_path`` is not one (``kind = "console"`` at the top level)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        return None
    try:
        kind = tomllib.loads(path.read_text(encoding="utf-8")).get("kind")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return path if kind == "console" else None


def _db_power(x: torch.Tensor) -> torch.Tensor:
    """dB of the mean power over channels and samples: (..., 2, n) -> (...)."""
    return 10.0 * torch.log10(x.square().mean(dim=(-1, -2)) + _EPS)


def balance_db(tracks: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Each track's level relative to the mix (dB): (batch, tracks, 2, n), (batch, 2, n) -> (batch, tracks)."""
    return _db_power(tracks) - _db_power(mix)[:, None]


def balance_error(pred_tracks, pred_mix, wet, mask) -> torch.Tensor:
    """Mean |relative level error| (dB) per batch item over the active tracks: (batch,)."""
    target = balance_db(wet, wet.sum(dim=1))
    active = mask * (target > -ACTIVE_DB).to(mask.dtype)
    err = (balance_db(pred_tracks, pred_mix) - target).abs() * active
    return err.sum(dim=1) / active.sum(dim=1).clamp_min(1.0)


def param_loss(params: ConsoleParams, gain_db: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
    """Effective fader (dB / 10) and pan errors where the targets are known (not NaN)."""
    effective = params.gain_db + params.master_gain_db[:, None]
    known_g, known_p = torch.isfinite(gain_db), torch.isfinite(pan)
    g = ((effective - torch.nan_to_num(gain_db)).abs() / 10.0 * known_g).sum() / known_g.sum().clamp_min(1)
    p = ((params.pan - torch.nan_to_num(pan)).abs() * known_p).sum() / known_p.sum().clamp_min(1)
    return g + p


class ConsoleObjective:
    """The three loss terms of the module docstring for a batch (dict of :func:`crop_batch`)."""

    def __init__(self, cfg: ConsoleTrainConfig):
        self.cfg = cfg
        self.mrstft = MultiResolutionSumDiffLoss(tuple(cfg.fft_sizes))
        self._targets: dict | None = None

    def bus_eq(self, net: ConsoleMixer, classes):
        """The class-bus EQ of a console whose network config asks for it (:mod:`fxmix.model.console.bus`,
        toward the training profile's targets), else None."""
        if not net.config.bus_eq:
            return None
        if self._targets is None:
            self._targets = profile_targets(load_profile(self.cfg.profile))
        return lambda panned: track_curves(panned.cpu().numpy(), classes, self._targets, net.config.sample_rate,
                                           fine=net.config.bus_eq_fine)

    def exciter(self, net: ConsoleMixer, classes):
        """The class-bus exciter of a console whose network config asks for it
        (:mod:`fxmix.model.console.exciter`, toward the training profile's targets), else None."""
        if not net.config.exciter:
            return None
        if self._targets is None:
            self._targets = profile_targets(load_profile(self.cfg.profile))
        return lambda panned: track_excitation(panned, classes, self._targets, net.config.sample_rate)

    @staticmethod
    def render_input(net: ConsoleMixer, batch: dict) -> torch.Tensor:
        """What the console renders: the levelled dry tracks (``render_levelled``) or the normalized ones."""
        return torch.from_numpy(batch["level" if net.config.render_levelled else "norm"])

    def __call__(self, net: ConsoleMixer, batch: dict) -> dict[str, torch.Tensor]:
        norm, wet = torch.from_numpy(batch["norm"]), torch.from_numpy(batch["wet"])
        mask = torch.from_numpy(batch["mask"])
        colour = torch.from_numpy(batch["colour"]) if "colour" in batch else None
        u, master_u = predict_units(net, norm, batch["classes"], mask, colour)
        params = ConsoleParams.from_unit(u, batch["classes"], master_u=master_u)
        classes = batch["classes"]
        sr = net.config.sample_rate
        transient = (lambda panned: track_transient_gains(panned, classes, sr)) if net.config.transient else None
        stages = render_console_stages(self.render_input(net, batch), params, bus_eq=self.bus_eq(net, classes),
                                       exciter=self.exciter(net, classes), transient=transient)
        target = wet.sum(dim=1)
        gains = batch["level_gain_db" if net.config.render_levelled else "gain_db"]
        out = {
            "mrstft": self.mrstft(stages.mix, target),
            "balance": balance_error(stages.panned, stages.mix, wet, mask).mean() / 10.0,
            "param": param_loss(params, torch.from_numpy(gains), torch.from_numpy(batch["pan"])),
        }
        c = self.cfg
        out["loss"] = c.w_mrstft * out["mrstft"] + c.w_balance * out["balance"] + c.w_param * out["param"]
        out["params"] = params
        out["mix"] = stages.mix
        out["panned"] = stages.panned
        return out


def _training_info(cfg: ConsoleTrainConfig, step: int) -> dict:
    """What the sidecar records of the run: the profile every verb must normalize the tracks with, the data."""
    return {"arch": "console", "profile": cfg.profile, "data_root": cfg.corpus, "cache_dir": cfg.cache,
            "step": step, "config": cfg.to_dict()}


def _sessions(cfg: ConsoleTrainConfig, progress: bool) -> tuple[list[Session], list[Session]]:
    cache = Path(cfg.cache or Path(cfg.out_dir) / "cache")
    if cfg.corpus:
        prepare_corpus(cfg.corpus, cache, cfg.profile, progress=progress)
    train, valid = load_sessions(cache, "train"), load_sessions(cache, "valid")
    if not train or not valid:
        raise ConfigError(f"{cache}: needs train and valid sessions (found {len(train)} and {len(valid)})")
    return train, valid


def _valid_names(valid: list[Session]) -> list[str]:
    return sorted(s.folder.name for s in valid)


def _loss_setup(cfg: ConsoleTrainConfig) -> dict:
    """What the validation loss's value depends on besides the weights: its terms' weights and resolutions."""
    return {"w_mrstft": cfg.w_mrstft, "w_balance": cfg.w_balance, "w_param": cfg.w_param,
            "fft_sizes": list(cfg.fft_sizes)}


def _resumed_best(state: dict | None, valid: list[Session], cfg: ConsoleTrainConfig) -> float:
    """The best validation loss to beat: the resumed run's, unless its losses do not compare with these
    (other validation sessions: a rebuilt corpus; other loss weights: a fine-tune with a new objective; or a
    checkpoint that did not record them); then the first validation sets the best again."""
    if not state:
        return math.inf
    for key, now in (("valid_sessions", _valid_names(valid)), ("loss_setup", _loss_setup(cfg))):
        if state.get(key) != now:
            log.warning("%s differ from the resumed run's: its best (%.4f) is not compared",
                        key.replace("_", " "), float(state.get("best_valid", math.inf)))
            return math.inf
    return float(state.get("best_valid", math.inf))


@torch.no_grad()
def validate(net: ConsoleMixer, objective: ConsoleObjective, sessions: list[Session]) -> dict[str, float]:
    """Mean loss terms over whole sessions (one at a time, deterministic)."""
    net.eval()
    sums: dict[str, float] = {}
    for s in sessions:
        out = objective(net, crop_batch([s], np.random.default_rng(0), None))
        for k in ("loss", "mrstft", "balance", "param"):
            sums[k] = sums.get(k, 0.0) + float(out[k])
    net.train()
    return {k: v / len(sessions) for k, v in sums.items()}


def _append_log(path: Path, row: dict) -> None:
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, LOG_FIELDS + ("valid_loss", "valid_mrstft", "valid_balance", "valid_param"))
        if new:
            w.writeheader()
        w.writerow(row)


def _trim_log(path: Path, step: int) -> None:
    """Drop log rows past ``step`` (written after the checkpoint a run resumes from; they are redone)."""
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
        write_text_atomic(path, "\n".join(kept) + "\n")


def train_console(cfg: ConsoleTrainConfig, *, resume: bool = False, progress: bool = True,
                  stop_after: int | None = None) -> dict:
    """Train (or resume) a console mixer run; returns ``{"step", "best_valid", "out_dir"}``."""
    from tqdm import tqdm

    torch.set_num_threads(max(1, cfg.threads))
    out = Path(cfg.out_dir)
    if has_checkpoints(out) and not resume:
        raise ConfigError(f"{out}: holds a run already; pass --resume to continue it or choose another out_dir")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    torch.manual_seed(cfg.seed)
    train, valid = _sessions(cfg, progress)
    net = ConsoleMixer(cfg.net)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    objective = ConsoleObjective(cfg)
    state = resume_checkpoint(out, net, opt) if resume else None
    if state is None and cfg.init_from:
        init_weights(net, cfg.init_from, neutral=cfg.init_neutral)
    step = int(state["step"]) if state else 0
    _trim_log(out / "log.csv", step)
    best = _resumed_best(state, valid, cfg)
    crop = int(round(cfg.crop_s * cfg.net.sample_rate))
    last = min(cfg.steps, step + stop_after) if stop_after else cfg.steps
    bar = tqdm(total=last - step, disable=not progress, desc="console train")
    net.train()
    while step < last:
        t0 = time.process_time()
        rng = np.random.default_rng([cfg.seed, step])  # per step: a resumed run draws what a whole run draws
        picks = rng.choice(len(train), size=min(cfg.batch, len(train)), replace=False)
        batch = crop_batch([train[i] for i in picks], rng, crop, cfg.max_tracks)
        lr = cosine_lr(cfg.lr, cfg.lr_final_ratio, step, cfg.decay_from, cfg.steps)
        for group in opt.param_groups:  # the config's, also on resume (the checkpoint's optimizer holds the last)
            group["lr"] = lr
        terms = objective(net, batch)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        row = {k: round(float(terms[k].detach()), 5) for k in ("loss", "mrstft", "balance", "param")}
        row.update(step=step, lr=lr, cpu_s=round(time.process_time() - t0, 2))
        if step % cfg.valid_every == 0 or step == last:
            v = validate(net, objective, valid)
            row.update({f"valid_{k}": round(x, 5) for k, x in v.items()})
            if v["loss"] < best:
                best = v["loss"]
                extra = {"training_step": step, "valid": v, "training": _training_info(cfg, step)}
                save_model(out / "best", net, extra=extra)
        _append_log(out / "log.csv", row)
        if step % cfg.checkpoint_every == 0 or step == last:
            save_checkpoint(out, step, net, opt, {"format": STATE_FORMAT, "best_valid": best,
                                                  "valid_sessions": _valid_names(valid),
                                                  "loss_setup": _loss_setup(cfg)}, cfg.keep)
        bar.update(1)
        bar.set_postfix(loss=row["loss"])
    bar.close()
    return {"step": step, "best_valid": best, "out_dir": str(out)}


@torch.no_grad()
def init_weights(net: ConsoleMixer, model_dir: str | Path, neutral: tuple = ()) -> None:
    """Start ``net`` from the saved console mixer in ``model_dir``. A tensor that grew (a network that reads
    more input channels, e.g. the colour) takes the saved values in its leading slice and zeros in the rest,
    so the new inputs start without effect and the network begins as the saved one. The console parameters
    named in ``neutral`` (e.g. ``eq_db``: a console that renders other tracks than the saved one's) start at
    their neutral setting: their rows of the track head are zeroed."""
    from fxmix.model.states import load_model

    saved = load_model(model_dir)[0].state_dict()
    own = net.state_dict()
    missing = sorted(set(own) - set(saved))
    if missing:
        raise ConfigError(f"{model_dir}: not a console mixer of this design (no {missing[:3]})")
    for name, value in own.items():
        old = saved[name]
        if old.shape == value.shape:
            value.copy_(old)
        elif old.dim() == value.dim() and all(a <= b for a, b in zip(old.shape, value.shape)):
            value.zero_()
            value[tuple(slice(0, a) for a in old.shape)] = old
        else:
            raise ConfigError(f"{model_dir}: {name} is {tuple(old.shape)}, cannot start {tuple(value.shape)} from it")
    for field in neutral:
        rows = unit_slice(field)
        net.track_head.weight[rows] = 0.0
        net.track_head.bias[rows] = 0.0


@torch.no_grad()
def evaluate_console(model_dir: str | Path, cache: str | Path, split: str = "test",
                     fft_sizes: tuple = (4096, 1024, 256)) -> dict:
    """Whole-session MR-STFT (sum/difference) and track balance error (dB) against the wet sum, for the
    console mixer in ``model_dir``, the normalized sum (unity console) and the mean engineer, per family
    and over all: ``{"rows": [...per session...], "families": {family: {system: {metric: mean}}}}``."""
    from fxmix.model.states import load_model

    net, _ = load_model(model_dir)
    objective = ConsoleObjective(ConsoleTrainConfig(cache=str(cache), fft_sizes=tuple(fft_sizes)))
    rows = []
    for s in load_sessions(cache, split):
        batch = crop_batch([s], np.random.default_rng(0), None)
        wet, mask = torch.from_numpy(batch["wet"]), torch.from_numpy(batch["mask"])
        target = wet.sum(dim=1)
        out = objective(net, batch)
        norm = torch.from_numpy(batch["norm"])
        systems = {"console": (out["mix"], out["panned"]),
                   "normalized_sum": (norm.sum(dim=1), norm)}
        mean = s.mean_engineer()
        if mean is not None:
            tracks = torch.from_numpy(np.asarray(mean[: wet.shape[1]], np.float32))[None]
            systems["mean_engineer"] = (tracks.sum(dim=1), tracks)
        for name, (mix, tracks) in systems.items():
            rows.append({"song": s.meta["name"], "family": s.meta["family"], "system": name,
                         "mrstft": float(objective.mrstft(mix, target)),
                         "balance_db": float(balance_error(tracks, mix, wet, mask)[0])})
    families: dict = {}
    for fam in sorted({r["family"] for r in rows}) + ["all"]:
        sel = [r for r in rows if fam in ("all", r["family"])]
        families[fam] = {
            sys: {m: float(np.mean([r[m] for r in sel if r["system"] == sys])) for m in ("mrstft", "balance_db")}
            | {"songs": sum(r["system"] == sys for r in sel)}
            for sys in sorted({r["system"] for r in sel})
        }
    return {"split": split, "rows": rows, "families": families}
