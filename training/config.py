"""Training configuration: a frozen dataclass read from TOML (never executed), with ``section.key=value`` overrides.

A training TOML has three tables (every key is optional; defaults below)::

    [data]
    root = "corpus"             # MUSDB18-layout dataset root (e.g. `fxmix data synth` output)
    cache_dir = "cache"         # normalized-stem cache (training/preprocess.py)
    profile = "synthetic-v1"    # factory profile name, JSON path, or "fit" (fit on the train split)
    input_source = "dry"        # normalize the "wet" stems (paper) or a synthetic corpus' "dry" stems
    [model]
    config = "fxmix-tiny"       # shipped network config name or a network TOML path ("" = arch defaults)
    arch = ""                   # with config = "": the architecture ("paper", "causal", ...)
    [model.overrides]           # constructor fields replacing the config's [net] values
    n_filters = 32
    [train]
    steps = 2000
    ...

Relative paths are relative to the current directory. Overrides from the command line use the dotted key and a
TOML value: ``--set train.steps=100 --set data.root=/data/synth --set model.overrides.n_filters=16``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dsp.chain import DEFAULT_STAGES, check_stages
from ..dsp.errors import ConfigError
from ..model.config import coerce_value, named_config_path
from ..model.registry import get_arch, load_net_config, net_config_from_dict

LOSS_NAMES = ("La", "Lb", "mrstft")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs.

    Attributes:
        data_root: dataset root folder (``<root>/{train,valid}/<song>/``).
        synth_songs, synth_seconds: when > 0 and ``data_root`` does not exist yet, a procedural corpus of that
            many songs is made there first (``fxmix data synth``), so a smoke config runs from the package alone.
        cache_dir: normalized-stem cache folder (built on first use, resumable).
        profile: normalization profile: factory name, JSON path, or "fit" (train split).
        input_source: "wet" (normalized wet stems, the paper) or "dry" (a synthetic corpus' dry stems).
        stages: normalization stages.
        cache_dtype: "float32" or "float16" cache storage.
        preprocess_jobs: worker processes for preprocessing.
        model_config: network config name (``fxmix-tiny``, ``paper``, ...) or TOML path; "" = ``model_arch``
            defaults.
        model_arch: architecture when ``model_config`` is "".
        model_overrides: network constructor fields that replace the config's values.
        out_dir: run folder (checkpoints, logs, final and best models).
        steps: optimizer steps in total (over all ranks: each step is one batch per rank).
        batch_size: examples per rank per step.
        crop_s: training crop length (s).
        lr: peak learning rate (Adam with AMSGrad).
        lr_final_ratio: cosine decay from ``lr`` to ``lr * lr_final_ratio`` at the last step.
        warmup_steps: linear warm-up from 0.
        weight_decay: Adam L2 weight decay.
        grad_clip: max L2 norm of the gradient (0 = no clipping).
        loss: "La", "Lb" or "mrstft" (fxmix.model.losses.get_loss).
        loss_pre_emphasis: FIR pre-emphasis of the loss (``["aw", "lp"]`` = reference; [] = none).
        balance_weight: weight of the class level-balance term added to the loss
            (fxmix.model.losses.ClassBalanceLoss, in LU; 0 = off).
        steps_per_epoch: an "epoch" for validation and logging purposes.
        checkpoint_every: steps between checkpoints; a kill loses at most this many steps.
        keep_checkpoints: how many recent checkpoints to keep.
        log_every: steps between train-log rows.
        valid_crop_s: length of each validation crop (s).
        valid_crops_per_song: evenly spaced validation crops per song.
        swap_prob: probability of swapping L/R of inputs and target together.
        gain_db: uniform random gain in [-gain_db, +gain_db] applied to inputs and target together.
        seed: seeds weights, data order, crops and augmentation (a CPU run is reproducible).
        device: "auto" (cuda if available), "cpu" or "cuda".
        amp: bf16 autocast on CUDA (ignored on CPU, which runs fp32).
        threads: torch CPU threads (0 = torch default).
        init_from: warm start: a saved model (folder or weights file, e.g. an earlier run's ``best``) whose
            tensors initialise the network before step 0. Tensors the new network has and the old one lacks
            (e.g. ``stem_faders`` added by an override) keep their fresh initialisation; "" = none.
        train_only: train only the parameters whose names start with one of these prefixes (e.g.
            ``["faders."]`` to calibrate the faders of a warm-started network); [] = all parameters.
    """

    data_root: str = "corpus"
    synth_songs: int = 0
    synth_seconds: float = 3.0
    cache_dir: str = "cache"
    profile: str = "fit"
    input_source: str = "wet"
    stages: tuple[str, ...] = DEFAULT_STAGES
    cache_dtype: str = "float32"
    preprocess_jobs: int = 1
    model_config: str = "fxmix-tiny"
    model_arch: str = ""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    out_dir: str = "runs/train"
    steps: int = 1000
    batch_size: int = 4
    crop_s: float = 2.0
    lr: float = 1e-3
    lr_final_ratio: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss: str = "mrstft"
    loss_pre_emphasis: tuple[str, ...] = ()
    balance_weight: float = 0.0
    steps_per_epoch: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    valid_crop_s: float = 4.0
    valid_crops_per_song: int = 2
    swap_prob: float = 0.5
    gain_db: float = 6.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    init_from: str = ""
    train_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "steps_per_epoch",
            "checkpoint_every",
            "log_every",
            "keep_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"train config: {name} = {getattr(self, name)} must be >= 1")
        for name in ("crop_s", "lr", "valid_crop_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"train config: {name} = {getattr(self, name)} must be > 0")
        if self.loss not in LOSS_NAMES:
            raise ConfigError(f"train config: loss = {self.loss!r}; use one of {LOSS_NAMES}")
        if self.device not in DEVICES:
            raise ConfigError(f"train config: device = {self.device!r}; use one of {DEVICES}")
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ConfigError(f"train config: swap_prob = {self.swap_prob} must be in [0, 1]")
        if min(self.gain_db, self.grad_clip, self.weight_decay, self.warmup_steps, self.balance_weight) < 0:
            raise ConfigError(
                "train config: gain_db, grad_clip, weight_decay, warmup_steps and balance_weight must be >= 0"
            )
        if not 0.0 <= self.lr_final_ratio <= 1.0:
            raise ConfigError(f"train config: lr_final_ratio = {self.lr_final_ratio} must be in [0, 1]")
        if self.input_source not in ("wet", "dry"):
            raise ConfigError(f"train config: input_source = {self.input_source!r}; use 'wet' or 'dry'")
        if not self.model_config and not self.model_arch:
            raise ConfigError("train config: set model.config (a network TOML/name) or model.arch")
        check_stages(self.stages)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_toml_tables(self) -> dict[str, dict[str, Any]]:
        """The config as the ``[data] [model] [train]`` tables it is read from."""
        flat = self.to_dict()
        out: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
        for section, key, attr in _KEYS:
            out[section][key] = flat[attr]
        return out


# (section, key in the TOML, dataclass attribute)
_KEYS: tuple[tuple[str, str, str], ...] = (
    ("data", "root", "data_root"),
    ("data", "synth_songs", "synth_songs"),
    ("data", "synth_seconds", "synth_seconds"),
    ("data", "cache_dir", "cache_dir"),
    ("data", "profile", "profile"),
    ("data", "input_source", "input_source"),
    ("data", "stages", "stages"),
    ("data", "cache_dtype", "cache_dtype"),
    ("data", "preprocess_jobs", "preprocess_jobs"),
    ("model", "config", "model_config"),
    ("model", "arch", "model_arch"),
    ("model", "overrides", "model_overrides"),
    ("train", "out_dir", "out_dir"),
    *(
        ("train", f.name, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name
        not in {
            "data_root",
            "synth_songs",
            "synth_seconds",
            "cache_dir",
            "profile",
            "input_source",
            "stages",
            "cache_dtype",
            "preprocess_jobs",
            "model_config",
            "model_arch",
            "model_overrides",
            "out_dir",
        }
    ),
)
_BY_DOTTED = {f"{s}.{k}": a for s, k, a in _KEYS}


def _coerce(attr: str, value: Any, where: str) -> Any:
    default = {f.name: f for f in dataclasses.fields(TrainConfig)}[attr].default
    if attr == "model_overrides":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: model.overrides must be a table")
        return dict(value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)
    return coerce_value(value, default, where)


def config_from_tables(tables: dict[str, Any], where: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed ``[data] [model] [train]`` tables.

    Raises:
        ConfigError: unknown table or key, or a value of the wrong type (names ``where`` and the key).
    """
    unknown_tables = sorted(set(tables) - {"data", "model", "train"})
    if unknown_tables:
        raise ConfigError(f"{where}: unknown table(s) {unknown_tables}; use [data], [model], [train]")
    kwargs: dict[str, Any] = {}
    for section, values in tables.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if dotted not in _BY_DOTTED:
                known = sorted(k.split(".", 1)[1] for k in _BY_DOTTED if k.startswith(section + "."))
                raise ConfigError(f"{where}: unknown key {dotted!r}; known keys in [{section}]: {known}")
            attr = _BY_DOTTED[dotted]
            kwargs[attr] = _coerce(attr, value, f"{where}: {dotted}")
    try:
        return TrainConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.steps=100"`` -> (["train", "steps"], 100). The value is TOML; bare words are strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: use section.key=value, e.g. train.steps=100")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override {text!r}: the key needs a section, e.g. train.steps or data.root")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


#: Shipped training configs: ``training/configs/<name>.toml`` and the recorded runs ``training/runs/<name>/``.
CONFIGS_DIR = Path(__file__).with_name("configs")
RUNS_DIR = Path(__file__).with_name("runs")


def named_train_config(name: str | os.PathLike) -> Path:
    """A training TOML path, or the name of a shipped one (``tiny-cpu``, ``default-offline``, ...)."""
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return path
    for candidate in (CONFIGS_DIR / f"{name}.toml", RUNS_DIR / str(name) / "train.toml"):
        if candidate.is_file():
            return candidate
    shipped = sorted([p.stem for p in CONFIGS_DIR.glob("*.toml")] + [p.parent.name for p in RUNS_DIR.glob("*/train.toml")])
    raise ConfigError(f"--config {name}: no such file and no shipped config of that name; shipped: {shipped}")


def load_train_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a training TOML (a path or a shipped config's name) and apply ``section.key=value`` overrides.

    Raises:
        ConfigError: unreadable file, unknown keys, bad values (the message names the file and the key).
    """
    path = named_train_config(path)
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read training config: {exc}") from None
    for text in overrides:
        parts, value = parse_override(text)
        node = tables
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {p} is not a table")
        node[parts[-1]] = value
    return config_from_tables(tables, where=str(path))


def build_network(cfg: TrainConfig):
    """A freshly initialised network for ``cfg`` (config file + overrides). Returns ``(model, arch, net_config)``.

    Raises:
        ConfigError: unknown config/arch or bad override (names the key).
    """
    if cfg.model_config:
        arch, base = load_net_config(named_config_path(cfg.model_config))
        data = base.to_dict()
    else:
        arch, data = cfg.model_arch, {}
    if cfg.model_arch and cfg.model_arch != arch:
        raise ConfigError(f"model.arch = {cfg.model_arch!r} but {cfg.model_config} is arch {arch!r}")
    data.update(cfg.model_overrides)
    config = net_config_from_dict(arch, data, where="model.overrides")
    return get_arch(arch)(config), arch, config
