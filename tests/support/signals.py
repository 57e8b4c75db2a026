"""Seeded procedural test signals (numpy only): stems with known, measurable properties."""

from __future__ import annotations

import numpy as np

SR = 44100


def _env(n: int, sr: int, period_s: float, decay: float) -> np.ndarray:
    t = np.arange(n) / sr
    return np.exp(-(t % period_s) * decay)


def vocals(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonic tone with 5 Hz vibrato, phrase gaps; centred mono as (2, n)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    notes = 220.0 * 2 ** (rng.integers(0, 12, size=int(seconds * 2) + 1) / 12)
    f0 = notes[(t * 2).astype(int)] * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k**1.3 for k in range(1, 12))
    gate = ((t * 2) % 4 < 3.4).astype(float)
    x = x * gate * (0.6 + 0.4 * _env(n, sr, 0.5, 3.0)) + 0.003 * rng.standard_normal(n)
    x = (0.15 * x / np.max(np.abs(x))).astype(np.float32)
    return np.stack([x, x])


def drums(seconds: float, sr: int = SR, seed: int = 1) -> np.ndarray:
    """Decaying noise bursts (hats/snare) plus a 60 Hz thump on beats; slightly decorrelated stereo."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    kick = np.sin(2 * np.pi * 60 * t) * _env(n, sr, 0.5, 18.0)
    hat = rng.standard_normal((2, n)) * _env(n, sr, 0.125, 60.0) * 0.3
    snare = rng.standard_normal((2, n)) * _env(n, sr, 1.0, 14.0) * ((t % 1.0) > 0.5) * 0.5
    x = kick[None] + hat + snare
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def bass(seconds: float, sr: int = SR, seed: int = 2) -> np.ndarray:
    """Low saw line 55-110 Hz, soft-clipped, centred."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f = 55.0 * 2 ** (rng.integers(0, 12, size=int(seconds * 4) + 1) / 12)
    phase = np.cumsum(f[(t * 4).astype(int)]) / sr
    saw = 2 * (phase % 1.0) - 1
    from scipy.signal import butter, sosfilt

    x = sosfilt(butter(4, 800, fs=sr, output="sos"), saw) * (0.5 + 0.5 * _env(n, sr, 0.25, 6.0))
    x = (0.25 * np.tanh(2 * x) / np.max(np.abs(np.tanh(2 * x)))).astype(np.float32)
    return np.stack([x, x])


def other(seconds: float, sr: int = SR, seed: int = 3) -> np.ndarray:
    """Detuned saw-chord pad (dense harmonics) with pick noise; wide (different voicings L/R)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    chans = []
    chord = (t // 2.0).astype(int) % 4  # a I-vi-IV-V progression, 2 s per chord
    for ch in range(2):
        x = np.zeros(n)
        for k, root in enumerate((65.4, 110.0, 87.3, 98.0)):
            sel = chord == k
            for iv in (0, 4, 7, 11 + ch, 16):
                for d in (-1, 1):
                    r = root * 2 ** (iv / 12) * (1 + 0.003 * d)
                    x[sel] += 2 * ((r * t[sel] + rng.uniform()) % 1.0) - 1
        pick = rng.standard_normal(n) * _env(n, sr, 0.25, 30.0) * 0.5  # strum/pick noise
        chans.append(x * (0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t + ch)) + pick)
    x = np.stack(chans)
    return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


def song(seconds: float, sr: int = SR, seed: int = 0) -> dict[str, np.ndarray]:
    return {
        "vocals": vocals(seconds, sr, seed),
        "drums": drums(seconds, sr, seed + 1),
        "bass": bass(seconds, sr, seed + 2),
        "other": other(seconds, sr, seed + 3),
    }


def noise(seconds: float, sr: int = SR, seed: int = 0, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((channels, int(seconds * sr)))).astype(np.float32)


def cut_at_full_level(x: np.ndarray, sr: int = SR, search_s: float = 1.0) -> np.ndarray:
    """``x`` (2, n) cut so that it starts and ends abruptly at full level, mid-waveform: at the loudest
    sample (the smaller |x| of the two channels) of its first and of its last ``search_s`` seconds."""
    level = np.abs(x).min(axis=0)
    m = int(search_s * sr)
    start = int(np.argmax(level[:m]))
    end = x.shape[1] - m + int(np.argmax(level[-m:]))
    return np.ascontiguousarray(x[:, start : end + 1])
