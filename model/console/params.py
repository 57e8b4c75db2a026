"""Console decisions: per-track parameters in physical units, their ranges, the network's squashing and JSON.

Every parameter is bounded by :data:`RANGES`. A network emits raw values ``u`` (any real numbers) and
:meth:`ConsoleParams.from_unit` squashes them into the ranges with a logistic function offset so that
``u = 0`` is the neutral console (0 dB fader, centre, flat EQ, compressor above every peak at 2:1, reverb
send at -40 dB); the ratio is squashed in log space (equal steps per doubling).

Attack and release are per track too, but they are not network outputs: the torch renderer does not
differentiate through the compressor's ballistics (see :mod:`fxmix.model.console.render`), so they come from
the track's class (:data:`fxmix.dsp.constants.COMPRESSOR_SETTINGS`) unless given.

Shape: every per-track field is ``(batch, tracks)`` except ``eq_db`` ``(batch, tracks, EQ_BANDS)``;
``master_gain_db`` is ``(batch,)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from fxmix.dsp import constants as C
from fxmix.dsp.errors import ConfigError

from .designs import EQ_FIR_TAPS, PAN_LAW, REVERB_IR_SECONDS, eq_band_centers_hz

#: (low, high, neutral) of every bounded parameter; the neutral value is what ``u = 0`` maps to.
RANGES: dict[str, tuple[float, float, float]] = {
    "gain_db": (-36.0, 12.0, 0.0),
    "pan": (-1.0, 1.0, 0.0),
    "eq_db": (-12.0, 12.0, 0.0),
    "comp_threshold_db": (-60.0, 6.0, 0.0),
    "comp_ratio": (1.0, 20.0, 2.0),
    "reverb_send_db": (-60.0, 0.0, -40.0),
    "master_gain_db": (-24.0, 12.0, 0.0),
}
#: ranges of the per-track compressor timing (ms); not network outputs
TIMING_RANGES: dict[str, tuple[float, float]] = {
    "comp_attack_ms": (0.1, 200.0),
    "comp_release_ms": (5.0, 3000.0),
}
#: parameters squashed in log space (positive ranges)
_LOG_SCALED = ("comp_ratio",)
EQ_BANDS = len(eq_band_centers_hz())
#: layout of the last axis of the network's per-track output ``u``: (name, width)
UNIT_LAYOUT: tuple[tuple[str, int], ...] = (
    ("gain_db", 1),
    ("pan", 1),
    ("eq_db", EQ_BANDS),
    ("comp_threshold_db", 1),
    ("comp_ratio", 1),
    ("reverb_send_db", 1),
)
#: width of the network's per-track output: ConsoleParams.from_unit takes (batch, tracks, UNIT_SIZE)
UNIT_SIZE = sum(w for _, w in UNIT_LAYOUT)
_TRACK_FIELDS = (
    "gain_db",
    "pan",
    "eq_db",
    "comp_threshold_db",
    "comp_ratio",
    "comp_attack_ms",
    "comp_release_ms",
    "reverb_send_db",
)


def _to_fraction(name: str, value: torch.Tensor) -> torch.Tensor:
    lo, hi, _ = RANGES[name]
    if name in _LOG_SCALED:
        return (torch.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (value - lo) / (hi - lo)


def _from_fraction(name: str, s: torch.Tensor) -> torch.Tensor:
    lo, hi, _ = RANGES[name]
    if name in _LOG_SCALED:
        return torch.exp(math.log(lo) + s * (math.log(hi) - math.log(lo)))
    return lo + s * (hi - lo)


def _offset(name: str) -> float:
    """The logit that puts ``u = 0`` on the neutral value."""
    s = float(_to_fraction(name, torch.tensor(RANGES[name][2], dtype=torch.float64)))
    return math.log(s / (1.0 - s))


def class_timing(classes: Sequence[str] | Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Attack and release (ms) per track from the class settings: (tracks,) or (batch, tracks) arrays."""
    names = np.asarray(classes, dtype=object)
    attack = np.vectorize(lambda c: C.COMPRESSOR_SETTINGS.get(c, C.COMPRESSOR_DEFAULT)["attack_ms"])(names)
    release = np.vectorize(lambda c: C.COMPRESSOR_SETTINGS.get(c, C.COMPRESSOR_DEFAULT)["release_ms"])(names)
    return attack.astype(np.float64), release.astype(np.float64)


@dataclass(frozen=True)
class ConsoleParams:
    """One console's decisions for a batch of sessions of N tracks each (see the module docstring).

    Fields (units in the names): ``gain_db`` fader after the compressor; ``pan`` -1 (left) .. 1 (right),
    :data:`~fxmix.model.console.designs.PAN_LAW`; ``eq_db`` band gains on :func:`eq_band_centers_hz`;
    ``comp_threshold_db``, ``comp_ratio``, ``comp_attack_ms``, ``comp_release_ms`` a stereo-linked
    JUCE/pedalboard compressor; ``reverb_send_db`` post-fader, post-pan send to the shared reverb;
    ``master_gain_db`` on the sum.
    """

    gain_db: torch.Tensor
    pan: torch.Tensor
    eq_db: torch.Tensor
    comp_threshold_db: torch.Tensor
    comp_ratio: torch.Tensor
    comp_attack_ms: torch.Tensor
    comp_release_ms: torch.Tensor
    reverb_send_db: torch.Tensor
    master_gain_db: torch.Tensor

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_unit(
        cls,
        u: torch.Tensor,
        classes: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        master_u: torch.Tensor | None = None,
    ) -> ConsoleParams:
        """Squash a network's raw output into the ranges (differentiable).

        Args:
            u: (batch, tracks, UNIT_SIZE) raw values laid out as :data:`UNIT_LAYOUT`.
            classes: each track's class (one list for every batch item, or one list per item), which
                sets attack/release; None gives :data:`fxmix.dsp.constants.COMPRESSOR_DEFAULT`.
            master_u: (batch,) raw master gain; None is 0 dB.
        """
        if u.ndim != 3 or u.shape[-1] != UNIT_SIZE:
            raise ValueError(f"u must be (batch, tracks, {UNIT_SIZE}), got {tuple(u.shape)}")
        out, i = {}, 0
        for name, width in UNIT_LAYOUT:
            s = torch.sigmoid(u[..., i : i + width] + _offset(name))
            out[name] = _from_fraction(name, s if width > 1 else s[..., 0])
            i += width
        b, n = u.shape[:2]
        master = torch.zeros(b, dtype=u.dtype, device=u.device)
        if master_u is not None:
            master = _from_fraction("master_gain_db", torch.sigmoid(master_u + _offset("master_gain_db")))
        attack, release = _timing_tensors(classes, b, n, u)
        return cls(**out, comp_attack_ms=attack, comp_release_ms=release, master_gain_db=master)

    @classmethod
    def neutral(
        cls,
        batch: int,
        tracks: int,
        classes: Sequence[str] | Sequence[Sequence[str]] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> ConsoleParams:
        """The console that ``u = 0`` gives."""
        return cls.from_unit(torch.zeros(batch, tracks, UNIT_SIZE, dtype=dtype), classes)

    def normalized(self) -> torch.Tensor:
        """(batch, tracks, UNIT_SIZE) position of each network-output parameter in its range, 0..1
        (log for the ratio): the space for a parameter loss against known decisions."""
        parts = []
        for name, width in UNIT_LAYOUT:
            v = getattr(self, name)
            parts.append(_to_fraction(name, v if width > 1 else v[..., None]))
        return torch.cat(parts, dim=-1)

    def to_unit(self, eps: float = 1e-6) -> torch.Tensor:
        """The raw ``u`` that :meth:`from_unit` maps to these values (clamped ``eps`` inside the ranges)."""
        s = self.normalized().clamp(eps, 1.0 - eps)
        offsets = torch.tensor(
            [_offset(name) for name, width in UNIT_LAYOUT for _ in range(width)], dtype=s.dtype
        ).to(s.device)
        return torch.log(s / (1.0 - s)) - offsets

    # ------------------------------------------------------------------ shape and checks

    @property
    def batch(self) -> int:
        return int(self.gain_db.shape[0])

    @property
    def tracks(self) -> int:
        return int(self.gain_db.shape[1])

    def map(self, fn) -> ConsoleParams:
        """A copy with ``fn`` applied to every tensor (``.detach()``, ``.to(device)``, ...)."""
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def select(self, index: int) -> ConsoleParams:
        """Batch item ``index`` as a batch of one."""
        return self.map(lambda t: t[index : index + 1])

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the field on a wrong shape or a value outside its range."""
        b, n = self.batch, self.tracks
        for f in fields(self):
            v = getattr(self, f.name)
            want = (b,) if f.name == "master_gain_db" else (b, n, EQ_BANDS) if f.name == "eq_db" else (b, n)
            if tuple(v.shape) != want:
                raise ConfigError(f"ConsoleParams.{f.name} has shape {tuple(v.shape)}, expected {want}")
            lo, hi = RANGES[f.name][:2] if f.name in RANGES else TIMING_RANGES[f.name]
            arr = v.detach().cpu().double()
            if not bool(torch.isfinite(arr).all()) or bool((arr < lo - 1e-4).any() | (arr > hi + 1e-4).any()):
                raise ConfigError(
                    f"ConsoleParams.{f.name} has values outside [{lo}, {hi}] "
                    f"(min {float(arr.min()):.4g}, max {float(arr.max()):.4g}); "
                    "build parameters with ConsoleParams.from_unit or clamp them to RANGES"
                )

    # ------------------------------------------------------------------ JSON

    def to_dict(self, index: int = 0, names: Sequence[str] | None = None) -> dict:
        """Batch item ``index`` as JSON-ready decisions, units in the key names."""
        p = self.select(index).map(lambda t: t.detach().cpu().double()[0])
        tracks = []
        for i in range(self.tracks):
            t = {"name": names[i]} if names is not None else {}
            for name in _TRACK_FIELDS:
                v = getattr(p, name)[i]
                t[name] = [round(float(x), 6) for x in v] if name == "eq_db" else round(float(v), 6)
            tracks.append(t)
        return {
            "console": {
                "pan_law": PAN_LAW,
                "eq_band_hz": [round(float(f), 4) for f in eq_band_centers_hz()],
                "eq_fir_taps": EQ_FIR_TAPS,
                "reverb": {"effect": "pedalboard.Reverb, wet only, fed L + R", **C.REVERB_RETURN,
                           "ir_s": REVERB_IR_SECONDS},
            },
            "master_gain_db": round(float(p.master_gain_db), 6),
            "tracks": tracks,
        }

    @classmethod
    def from_dict(cls, d: dict, dtype: torch.dtype = torch.float32) -> ConsoleParams:
        """Decisions written by :meth:`to_dict` as a batch of one; missing timing keys take the default
        class timing. Raises :class:`ConfigError` naming the key on a missing or out-of-range value."""
        tracks = d.get("tracks") if isinstance(d, dict) else None
        if not isinstance(tracks, list) or not tracks:
            raise ConfigError("console decisions need a non-empty 'tracks' list (written by to_dict)")
        cols: dict[str, list] = {name: [] for name in _TRACK_FIELDS}
        for k, t in enumerate(tracks):
            for name in _TRACK_FIELDS:
                if name not in t and name in TIMING_RANGES:
                    t = {**t, name: C.COMPRESSOR_DEFAULT[name.removeprefix("comp_")]}
                if name not in t:
                    raise ConfigError(f"console decisions: tracks[{k}] has no '{name}'")
                cols[name].append(t[name])
        try:
            out = {name: torch.tensor([v], dtype=dtype) for name, v in cols.items()}
            master = torch.tensor([float(d.get("master_gain_db", 0.0))], dtype=dtype)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"console decisions: a value is not a number ({e})") from e
        params = cls(**out, master_gain_db=master)
        params.check()
        return params


def _timing_tensors(classes, b: int, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if classes is None:
        attack = np.full((b, n), C.COMPRESSOR_DEFAULT["attack_ms"])
        release = np.full((b, n), C.COMPRESSOR_DEFAULT["release_ms"])
    else:
        attack, release = class_timing(classes)
        if attack.shape not in ((n,), (b, n)):
            raise ValueError(f"classes must name {n} tracks (or {b} x {n}), got shape {attack.shape}")
        attack, release = np.broadcast_to(attack, (b, n)), np.broadcast_to(release, (b, n))
    as_tensor = lambda a: torch.tensor(np.asarray(a), dtype=like.dtype, device=like.device)  # noqa: E731
    return as_tensor(attack), as_tensor(release)
