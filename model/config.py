"""Network configurations: frozen dataclasses loaded from TOML (never executed), validated on creation.

A network TOML file names its architecture and lists the constructor fields under ``[net]``::

    arch = "paper"          # a name in fxmix.model.registry
    [net]
    n_filters = 128

Missing fields take the reference defaults; unknown fields and wrong types raise :class:`ConfigError`
naming the file and the key. Named configs shipped with fxmix live in ``model/configs/*.toml`` and are
found by :func:`named_config_path` (``"paper"``, ``"wave_unet"``, ``"fxmix-tiny"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib
from fxmix.dsp.constants import SAMPLE_RATE
from fxmix.dsp.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"

#: name -> file under model/configs; "fxmix-tiny" is the tiny smoke-test model (STYLE.md rule 18).
NAMED_CONFIGS: dict[str, str] = {
    "paper": "paper.toml",
    "wave_unet": "wave_unet.toml",
    "fxmix-tiny": "tiny.toml",
    "tiny": "tiny.toml",
}


def _check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise ConfigError(f"{type(cfg).__name__}.{name} = {value!r}: must be > 0")


@dataclass(frozen=True)
class NetConfig:
    """Fields every mixing network shares.

    Attributes:
        sample_rate: audio rate the network was built/trained for (Hz).
        n_stems: stems in the input, in fxmix.dsp.constants.CLASSES order.
        n_channels: audio channels per stem and in the output (2 = stereo).
    """

    sample_rate: int = SAMPLE_RATE
    n_stems: int = 4
    n_channels: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "sample_rate", "n_stems", "n_channels")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config"):
        """Build from a dict, checking keys and value types.

        Raises:
            ConfigError: unknown key or a value of the wrong type (names ``where`` and the key).
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}"
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            default = fields[key].default
            kwargs[key] = coerce_value(value, default, f"{where}: {key}")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def coerce_value(value: Any, default: Any, where: str) -> Any:
    """Check a TOML value against the type of a dataclass field's default (bool/int/float/str/tuple)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(value)
    return value


@dataclass(frozen=True)
class PaperNetConfig(NetConfig):
    """Hyper-parameters of the paper network (defaults = reference ``CAFX_TDCN_MIX``, 2,752,817 params).

    Attributes:
        n_filters: front-end filters N (latent channels).
        frontend_kernel: taps of the full-rate encoder conv and the tied decoder.
        adaptive_kernel: taps of the depthwise "adaptive" conv after |.|.
        pool: max-pool factor = latent frame length in samples.
        bottleneck: TCN bottleneck channels B.
        hidden: TCN block hidden channels H.
        skip: TCN skip channels.
        tcn_kernel: TCN depthwise kernel P.
        n_blocks: TCN blocks per repeat X (dilations 1..2^(X-1)).
        n_repeats: TCN repeats R.
        lstm_hidden: BLSTM hidden size per direction.
        lstm_layers: BLSTM layers.
        lstm_dropout: dropout between BLSTM layers (training only).
        se_expansion: squeeze-excitation expansion factor (reference "amplifying ratio").
        chrono_max_steps: T_max of the chrono LSTM bias init (forget bias = log U(1, T_max - 1)).
        stem_faders: learn one input gain per stem class (:class:`fxmix.model.nets.StemFaders`, starts at 0 dB).
            Not in the reference; off by default so the reference hyper-parameters stay exact.
    """

    n_filters: int = 128
    frontend_kernel: int = 64
    adaptive_kernel: int = 128
    pool: int = 64
    bottleneck: int = 256
    hidden: int = 128
    skip: int = 64
    tcn_kernel: int = 3
    n_blocks: int = 6
    n_repeats: int = 4
    lstm_hidden: int = 64
    lstm_layers: int = 3
    lstm_dropout: float = 0.1
    se_expansion: int = 16
    chrono_max_steps: int = 32
    stem_faders: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(
            self,
            "n_filters",
            "frontend_kernel",
            "adaptive_kernel",
            "pool",
            "bottleneck",
            "hidden",
            "skip",
            "tcn_kernel",
            "n_blocks",
            "n_repeats",
            "lstm_hidden",
            "lstm_layers",
            "se_expansion",
        )
        if self.tcn_kernel % 2 != 1:
            raise ConfigError(
                f"PaperNetConfig.tcn_kernel = {self.tcn_kernel}: must be odd (symmetric padding)"
            )
        if not 0.0 <= self.lstm_dropout < 1.0:
            raise ConfigError(f"PaperNetConfig.lstm_dropout = {self.lstm_dropout}: must be in [0, 1)")
        if self.chrono_max_steps < 3:
            raise ConfigError(f"PaperNetConfig.chrono_max_steps = {self.chrono_max_steps}: must be >= 3")


@dataclass(frozen=True)
class WaveUNetConfig(NetConfig):
    """Hyper-parameters of the Wave-U-Net baseline (defaults = reference ``wun_S_Lb``, 2,477,162 params).

    Attributes:
        n_levels: U-Net levels; features per level = ``features_root * 2**i``.
        features_root: channels of the first level.
        kernel: taps of every (valid) convolution.
        group_channels: channels per GroupNorm group.
        depth: convolutions per block side.
        stride: down/up-sampling factor per level (reference: 1, i.e. everything runs at full rate).
        resample_kernel: taps of the fixed windowed-sinc resampling filters (odd).
    """

    n_levels: int = 5
    features_root: int = 24
    kernel: int = 5
    group_channels: int = 8
    depth: int = 1
    stride: int = 1
    resample_kernel: int = 15

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(
            self,
            "n_levels",
            "features_root",
            "kernel",
            "group_channels",
            "depth",
            "stride",
            "resample_kernel",
        )
        if self.n_levels < 2:
            raise ConfigError(f"WaveUNetConfig.n_levels = {self.n_levels}: must be >= 2")
        if self.kernel % 2 != 1 or self.resample_kernel % 2 != 1:
            raise ConfigError("WaveUNetConfig.kernel and resample_kernel must be odd")
        if self.features_root % self.group_channels != 0:
            raise ConfigError(
                f"WaveUNetConfig.features_root = {self.features_root} must be a multiple of "
                f"group_channels = {self.group_channels}"
            )
        if self.stride != 1:
            raise ConfigError(
                f"WaveUNetConfig.stride = {self.stride}: only stride 1 (the reference setting) is implemented"
            )


def named_config_path(name: str) -> Path:
    """Path of a shipped config (``paper``, ``wave_unet``, ``fxmix-tiny``) or of a TOML file."""
    if name in NAMED_CONFIGS:
        return CONFIG_DIR / NAMED_CONFIGS[name]
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return path
    raise ConfigError(
        f"{name!r} is neither a shipped network config ({sorted(NAMED_CONFIGS)}) nor an existing .toml file"
    )


def net_config_from_dict(arch: str, data: dict[str, Any], where: str = "config") -> NetConfig:
    """Config object for a registered ``arch`` from a plain dict (e.g. a JSON sidecar or a TOML table)."""
    from .registry import get_arch

    cls = get_arch(arch)
    config_cls = getattr(cls, "config_class", None)
    if config_cls is None:  # fall back to the constructor's annotated config type
        import inspect
        import typing

        params = list(inspect.signature(cls.__init__).parameters)
        hints = typing.get_type_hints(cls.__init__) if len(params) > 1 else {}
        hint = hints.get(params[1]) if len(params) > 1 else None
        for candidate in typing.get_args(hint) or (hint,):
            if isinstance(candidate, type) and hasattr(candidate, "from_dict"):
                config_cls = candidate
                break
    if config_cls is None:
        raise ConfigError(f"{where}: architecture {arch!r} has no config_class")
    return config_cls.from_dict(dict(data), where=where)


def load_net_config(name_or_path: str | Path) -> tuple[str, NetConfig]:
    """Read a network TOML (``arch = ...`` + ``[net]`` table). Returns ``(arch, config)``.

    Raises:
        ConfigError: unreadable TOML, missing ``arch``, unknown keys, bad values (the message names the file).
    """
    path = named_config_path(str(name_or_path))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read network config: {exc}") from None
    extra = sorted(set(data) - {"arch", "net", "name", "description"})
    if extra:
        raise ConfigError(f"{path}: unknown top-level key(s) {extra}; expected arch, net, name, description")
    arch = data.get("arch")
    if not isinstance(arch, str):
        raise ConfigError(f'{path}: missing arch = "..." (e.g. arch = "paper")')
    net = data.get("net", {})
    if not isinstance(net, dict):
        raise ConfigError(f"{path}: [net] must be a table")
    return arch, net_config_from_dict(arch, net, where=str(path))


def build_model(name_or_path: str | Path):
    """Instantiate a freshly initialised network from a named config or TOML file."""
    from .registry import get_arch

    arch, config = load_net_config(name_or_path)
    return get_arch(arch)(config)
