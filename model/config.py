"""Network configurations: frozen dataclasses loaded from TOML (never executed), validated on creation.

Every network's ``*Config`` lives here: :class:`NetConfig` (shared fields), :class:`PaperNetConfig`,
:class:`WaveUNetConfig` and :class:`CausalConfig`. Reading a network TOML by architecture name
(``load_net_config``, ``build_model``) is in :mod:`fxmix.model.registry`, which knows the architectures.

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
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fxmix.dsp.constants import CLASSES, SAMPLE_RATE
from fxmix.dsp.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"

#: Largest accepted look-ahead of the causal network (samples at 44.1 kHz) = 10 ms; its encoder kernel sets it.
MAX_LOOKAHEAD_SAMPLES = 441

#: name -> file under model/configs; "fxmix-tiny" is the tiny smoke-test model (STYLE.md rule 18).
NAMED_CONFIGS: dict[str, str] = {
    "paper": "paper.toml",
    "wave_unet": "wave_unet.toml",
    "fxmix-tiny": "tiny.toml",
    "tiny": "tiny.toml",
}


#: Sample rates a network may be built for (Hz).
SAMPLE_RATE_LIMITS = (8_000, 384_000)


def _check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise ConfigError(f"{type(cfg).__name__}.{name} = {value!r}: must be > 0")


def _check_limits(cfg: Any) -> None:
    """Every field named in the class's ``LIMITS`` lies in its ``[lo, hi]``: the bounds keep a sidecar or TOML
    from asking for a network that cannot be allocated or takes minutes to build."""
    for name, (lo, hi) in type(cfg).LIMITS.items():
        value = getattr(cfg, name)
        if not lo <= value <= hi:
            raise ConfigError(
                f"{type(cfg).__name__}.{name} = {value!r}: must be in [{lo}, {hi}] "
                "(the documented bounds of this architecture)"
            )


@dataclass(frozen=True)
class NetConfig:
    """Fields every mixing network shares.

    Attributes:
        sample_rate: audio rate the network was built/trained for (Hz).
        n_stems: stems in the input, in fxmix.dsp.constants.CLASSES order.
        n_channels: audio channels per stem and in the output (2 = stereo).

    ``LIMITS`` (field -> inclusive bounds) is checked on creation; each subclass extends it.
    """

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "sample_rate": SAMPLE_RATE_LIMITS,
        "n_stems": (1, len(CLASSES)),
        "n_channels": (1, 2),
    }

    sample_rate: int = SAMPLE_RATE
    n_stems: int = 4
    n_channels: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "sample_rate", "n_stems", "n_channels")
        _check_limits(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config"):
        """Build from a dict, checking keys and value types.

        Raises:
            ConfigError: unknown key or a value of the wrong type (names ``where`` and the key).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the network config must be an object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}"
            )
        return _build_checked(cls, data, fields, where)


def _build_checked(cls, data: dict[str, Any], fields: dict, where: str):
    """``cls(**data)`` with every value checked against its field's default type first."""
    kwargs = {key: coerce_value(value, fields[key].default, f"{where}: {key}") for key, value in data.items()}
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
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

    Bounds (``LIMITS``): channel counts up to 4-8x the reference's, kernels and pool up to 4096 taps,
    ``n_blocks`` <= 10 (dilation 512), ``n_repeats`` <= 8, ``lstm_layers`` <= 8, ``se_expansion`` <= 64.
    """

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        **NetConfig.LIMITS,
        "n_filters": (1, 1024),
        "frontend_kernel": (1, 4096),
        "adaptive_kernel": (1, 4096),
        "pool": (1, 4096),
        "bottleneck": (1, 1024),
        "hidden": (1, 1024),
        "skip": (1, 512),
        "tcn_kernel": (1, 31),
        "n_blocks": (1, 10),
        "n_repeats": (1, 8),
        "lstm_hidden": (1, 1024),
        "lstm_layers": (1, 8),
        "se_expansion": (1, 64),
        "chrono_max_steps": (3, 1_000_000),
    }

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

    Bounds (``LIMITS``): ``n_levels`` <= 12, kernels <= 255 taps, ``depth`` <= 8, and the deepest level's
    features ``features_root * 2**(n_levels - 1)`` <= :attr:`MAX_FEATURES`.
    """

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        **NetConfig.LIMITS,
        "n_levels": (2, 12),
        "features_root": (1, 512),
        "kernel": (1, 255),
        "group_channels": (1, 512),
        "depth": (1, 8),
        "stride": (1, 1),
        "resample_kernel": (1, 255),
    }
    MAX_FEATURES: ClassVar[int] = 4096

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
        if self.features_root * 2 ** (self.n_levels - 1) > self.MAX_FEATURES:
            raise ConfigError(
                f"WaveUNetConfig: features_root * 2**(n_levels - 1) = "
                f"{self.features_root * 2 ** (self.n_levels - 1)} exceeds {self.MAX_FEATURES}"
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


@dataclass(frozen=True)
class CausalConfig:
    """Hyper-parameters of :class:`fxmix.model.causal.CausalMixer` (TOML keys have the same names).

    Attributes:
        arch: Must be ``"causal"`` (lets the training command pick this network).
        sample_rate: Audio rate the network runs at (Hz).
        n_stems: Number of stem classes in the input (``CLASSES`` order).
        n_channels: Audio channels per stem (2 = stereo).
        n_latent: Front-end channels N (paper: 128).
        encoder_kernel: Taps of the tied encoder/decoder; latency = ``encoder_kernel - 1`` samples
            (paper: 64, non-causal).
        envelope_kernel: Taps of the depthwise envelope conv on ``|p|`` (paper: 128).
        hop_samples: Frame hop of the latent (max-pool) rate (paper: 64 → 689 Hz).
        bottleneck: TCN bottleneck channels B (paper: 256).
        hidden: TCN block hidden channels H (paper: 128).
        skip: TCN skip channels (paper: 64).
        tcn_kernel: Kernel of the dilated depthwise convs (paper: 3).
        n_blocks: Blocks per repeat X, dilations 1, 2, ..., 2**(X-1) (paper: 6).
        n_repeats: Repeats R (paper: 4); past context 1 + R·(k-1)·(2**X - 1) frames.
        lstm_layers: Unidirectional LSTM layers (hidden size = ``n_latent``; paper: 3-layer BLSTM).
        lstm_dropout: Dropout between LSTM layers (training only).
        se_expansion: Hidden size of the SE MLP as a multiple of ``n_latent`` (paper: 16).
        chrono_max_frames: Chrono initialisation of the LSTM forget bias, log U(1, this) (paper: 31).

    Bounds (``LIMITS``): as :class:`PaperNetConfig`'s for the shared fields; ``envelope_kernel`` and
    ``hop_samples`` <= 4096; ``encoder_kernel`` is bounded by the look-ahead limit.
    """

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "sample_rate": SAMPLE_RATE_LIMITS,
        "n_stems": (1, len(CLASSES)),
        "n_channels": (1, 2),
        "n_latent": (1, 1024),
        "encoder_kernel": (1, MAX_LOOKAHEAD_SAMPLES + 1),
        "envelope_kernel": (1, 4096),
        "hop_samples": (1, 4096),
        "bottleneck": (1, 1024),
        "hidden": (1, 1024),
        "skip": (1, 512),
        "tcn_kernel": (2, 31),
        "n_blocks": (1, 10),
        "n_repeats": (1, 8),
        "lstm_layers": (1, 8),
        "se_expansion": (1, 64),
        "chrono_max_frames": (1.0, 1_000_000.0),
    }

    arch: str = "causal"
    sample_rate: int = SAMPLE_RATE
    n_stems: int = len(CLASSES)
    n_channels: int = 2
    n_latent: int = 64
    encoder_kernel: int = 32
    envelope_kernel: int = 32
    hop_samples: int = 64
    bottleneck: int = 128
    hidden: int = 128
    skip: int = 64
    tcn_kernel: int = 3
    n_blocks: int = 6
    n_repeats: int = 2
    lstm_layers: int = 2
    lstm_dropout: float = 0.0
    se_expansion: int = 4
    chrono_max_frames: float = 31.0

    def __post_init__(self) -> None:
        if self.arch != "causal":
            raise ConfigError(f"CausalConfig.arch must be 'causal', got {self.arch!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "int" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"CausalConfig.{f.name} must be a positive integer, got {v!r}")
        if not 0.0 <= float(self.lstm_dropout) < 1.0:
            raise ConfigError(f"CausalConfig.lstm_dropout must be in [0, 1), got {self.lstm_dropout!r}")
        if not float(self.chrono_max_frames) > 1.0:
            raise ConfigError(f"CausalConfig.chrono_max_frames must be > 1, got {self.chrono_max_frames!r}")
        if self.encoder_kernel - 1 > MAX_LOOKAHEAD_SAMPLES:
            raise ConfigError(
                f"CausalConfig.encoder_kernel = {self.encoder_kernel} gives a look-ahead of "
                f"{self.encoder_kernel - 1} samples; at most {MAX_LOOKAHEAD_SAMPLES} (10 ms) is allowed, "
                f"use encoder_kernel <= {MAX_LOOKAHEAD_SAMPLES + 1}"
            )
        if self.tcn_kernel < 2:
            raise ConfigError(f"CausalConfig.tcn_kernel must be >= 2, got {self.tcn_kernel}")
        _check_limits(self)

    def to_dict(self) -> dict:
        """Plain dict (JSON/TOML-serialisable) of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> CausalConfig:
        """Build from a dict; unknown keys and values of the wrong type raise :class:`ConfigError` naming
        ``where`` and the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the network config must be an object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown} for the causal network; known: {sorted(fields)}"
            )
        return _build_checked(cls, data, fields, where)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> CausalConfig:
        """Load from a TOML file: the ``[net]`` table (fxmix's network TOML layout, ``arch = "causal"`` at the
        top; a ``[model]`` table is accepted too), or flat top-level keys."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from exc
        for table in ("net", "model"):  # fxmix network TOML: arch = "causal" + a [net] table
            if isinstance(data.get(table), dict):
                arch = data.get("arch", "causal")
                if arch != "causal":
                    raise ConfigError(f"{path}: arch = {arch!r}, expected 'causal' for CausalConfig")
                data = data[table]
                break
        return cls.from_dict(data, where=str(path))


@dataclass(frozen=True)
class MixerConfig(NetConfig):
    """Hyper-parameters of :class:`fxmix.model.mixer.ConsoleMixer` (``n_stems`` = classes it embeds).

    Attributes:
        n_fft: STFT length of the track features (Hann).
        hop: STFT hop of the track features.
        conv_channels: channels of the per-track convolutions over time.
        d_model: width of the track states and the attention across tracks.
        n_heads: attention heads (must divide ``d_model``).
        n_layers: Transformer encoder layers across tracks.
        ff_size: hidden width of each layer's feed-forward.
        dropout: dropout inside the layers (training only).
        master_hidden: hidden width of the master-gain head.
        colour: the features also carry each track's *colour*, what the effect normalization changed per band
            (the dry track's long-term band level over the normalized track's, :func:`fxmix.model.mixer.colour_of`),
            so the network knows the recording's own level and timbre that the normalization took away.
        colour_eq: (with ``colour``) each track's console EQ starts from the curve that gives the track back its
            own timbre, the colour on the EQ's octave bands at the normalized track's K-weighted level
            (:meth:`fxmix.model.mixer.ConsoleMixer.restoring_units`), and the network decides the EQ relative to
            that: the engineer's EQ acted on the recording, not on the normalized track.
        render_levelled: (with ``colour``) the console renders each *dry* track levelled to its class loudness
            target (the normalization's loudness stage alone), not the effect-normalized track: the network
            still reads the normalized track and its colour, and its EQ, compressor, fader and pan act on the
            recording's own timbre and dynamics, as an engineer's do.
        bus_eq: after the track chains, each class bus is EQ'd toward its profile's tonal target
            (:mod:`fxmix.model.console.bus`, measured from the bus, not learned), as an engineer's bus EQ.
        bus_eq_fine: (with ``bus_eq``) the bus EQ is the corpus engineer's half-octave graphic EQ fit, rendered as a
            linear-phase FIR of its response on the profile's 1/6-octave grid
            (:func:`fxmix.model.console.bus.fine_curve_toward`), not a fit on the console EQ's octaves.
        exciter: before the bus EQ, each class bus's harmonic exciter adds its tracks' saturated top end at the
            level that brings the bus's top bands closest to the class's tonal target
            (:mod:`fxmix.model.console.exciter`, measured, not learned), as the corpus engineer's buses do.
        transient: after the bus EQ, each class bus's transient cut (one gain from the bus, on its tracks;
            :mod:`fxmix.model.console.transient`, measured, not learned), as the corpus engineer's buses do.
    """

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        **NetConfig.LIMITS,
        "n_fft": (256, 16384),
        "hop": (64, 16384),
        "conv_channels": (1, 1024),
        "d_model": (1, 1024),
        "n_heads": (1, 64),
        "n_layers": (1, 12),
        "ff_size": (1, 4096),
        "master_hidden": (1, 1024),
    }

    n_fft: int = 4096
    hop: int = 2048
    conv_channels: int = 96
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 3
    ff_size: int = 256
    dropout: float = 0.1
    master_hidden: int = 64
    colour: bool = False
    colour_eq: bool = False
    render_levelled: bool = False
    bus_eq: bool = False
    bus_eq_fine: bool = False
    exciter: bool = False
    transient: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_heads != 0:
            raise ConfigError(f"MixerConfig.d_model = {self.d_model} must be a multiple of n_heads = {self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"MixerConfig.dropout = {self.dropout}: must be in [0, 1)")
        if self.colour_eq and not self.colour:
            raise ConfigError("MixerConfig.colour_eq needs colour = true (the EQ starts from the track's colour)")
        if self.render_levelled and not self.colour:
            raise ConfigError("MixerConfig.render_levelled needs colour = true (the network must know the timbre the "
                              "console acts on)")
