"""Effect-related features of a stereo stem: loudness, long-term spectrum, spectral panning, onset-peak dynamics.

Each measure is a pure function ``measure_*(audio, sample_rate) -> frozen dataclass``; :func:`measure` takes
them all from one STFT. Dataset averages go through :func:`mean_features` (in dB for spectra, i.e. geometric
means). Differences from the reference (fxnorm-spec.md §1.3) are noted per function.

streaming-safe: no (whole-stem statistics; see ``fxmix.dsp.streaming`` for the running versions).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy
import scipy.fft
from scipy.ndimage import maximum_filter1d, median_filter

from . import constants as C
from .audio import peak_db
from .bands import band_centers_hz, band_weights, weigh_bins

_EPS = 1e-12
#: samples per chunk in the chunked whole-stem loops (loudness, envelopes): temporaries of a few MB
_CHUNK_SAMPLES = 1 << 16
#: samples of analysis frames per chunk of the STFT sums, and onset frames per chunk of the spectral flux:
#: each chunk's temporaries are a few MB (two stems at work in parallel stay near one stem copy each)
_STFT_CHUNK = 1 << 17
_ONSET_FRAMES = 256


@dataclass(frozen=True)
class StemFeatures:
    """Features of one stereo stem. Spectra and φ are on :func:`fxmix.dsp.bands.band_centers_hz`."""

    loudness_lufs: float
    spectrum_db: np.ndarray = field(repr=False)  # band power in dB as if loudness-normalized to -30 LUFS
    phi: np.ndarray = field(repr=False)  # per-band stereo similarity φ in [0, 1] (1 = equal level L/R)
    onset_peak_mean_db: float  # mean onset peak (dB re a -10 dBFS peak-normalized stem)
    onset_peak_std_db: float
    silent: bool = False

    @property
    def mean_phi(self) -> float:
        return float(np.mean(self.phi))


# ---------------------------------------------------------------- loudness


#: BS.1770 K-weighting as pyloudnorm designs it (RBJ cookbook biquads, the same coefficients):
#: (gain dB, Q, corner Hz, kind) of the high shelf and the high pass
_K_STAGES = ((4.0, 1 / np.sqrt(2), 1500.0, "high_shelf"), (0.0, 0.5, 38.0, "high_pass"))


def _k_biquad(gain_db: float, q: float, fc: float, kind: str, rate: int) -> np.ndarray:
    """[b0, b1, b2, 1, a1, a2] of one K-weighting stage (pyloudnorm's ``IIRfilter`` formulas)."""
    big_a = 10 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * (fc / rate)
    alpha, cos = np.sin(w0) / (2.0 * q), np.cos(w0)
    if kind == "high_shelf":
        root = 2 * np.sqrt(big_a) * alpha
        b = [big_a * ((big_a + 1) + (big_a - 1) * cos + root), -2 * big_a * ((big_a - 1) + (big_a + 1) * cos),
             big_a * ((big_a + 1) + (big_a - 1) * cos - root)]
        a = [(big_a + 1) - (big_a - 1) * cos + root, 2 * ((big_a - 1) - (big_a + 1) * cos),
             (big_a + 1) - (big_a - 1) * cos - root]
    else:  # high pass
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.concatenate([np.array(b) / a[0], np.array(a) / a[0]])


@lru_cache(maxsize=8)
def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """BS.1770 K-weighting (pyloudnorm's own shelf + high-pass coefficients) as second-order sections."""
    return np.stack([_k_biquad(*stage, sample_rate) for stage in _K_STAGES]).astype(np.float32)


def k_weighting_response(freqs_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Complex response of :func:`k_weighting_sos` at ``freqs_hz`` (float64)."""
    z = np.exp(-2j * np.pi * np.asarray(freqs_hz, np.float64) / sample_rate)
    h = np.ones(z.shape, complex)
    for b0, b1, b2, a0, a1, a2 in k_weighting_sos(sample_rate).astype(np.float64):
        h *= (b0 + z * (b1 + z * b2)) / (a0 + z * (a1 + z * a2))
    return h


def _load_sos_kernel():
    """scipy's compiled second-order-section loop (``scipy.signal._sosfilt``, what ``scipy.signal.sosfilt``
    runs), loaded on its own: importing ``scipy.signal`` costs most of a second of CPU (it imports
    scipy.stats and parses the docstrings of every function), more than K-weighting a whole song, and the
    K-weighting needs nothing else of it. A private module of scipy, so tested bit for bit against
    ``scipy.signal.sosfilt``; None where scipy's layout differs (then :func:`sosfilt` takes the public one)."""
    name = "scipy.signal._sosfilt"
    try:
        if name in sys.modules:  # scipy.signal is loaded already: its own module
            return sys.modules[name]._sosfilt
        so = next((Path(scipy.__file__).parent / "signal").glob("_sosfilt.*.so"))
        loader = importlib.machinery.ExtensionFileLoader(name, str(so))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
        loader.exec_module(module)
        return module._sosfilt
    except (StopIteration, ImportError, AttributeError, OSError):
        return None


_SOS_KERNEL = _load_sos_kernel()


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x, axis=-1, zi=zi)`` of float32 (channels, n) audio: (y, final state),
    the state (sections, channels, 2) float32; the same loop on the same float32 numbers."""
    if _SOS_KERNEL is None:
        from scipy.signal import sosfilt as scipy_sosfilt

        return scipy_sosfilt(sos, x, axis=-1, zi=zi)
    y = np.array(x, np.float32, order="C")  # the kernel filters in place
    state = np.ascontiguousarray(np.moveaxis(zi, 0, 1), np.float32)  # (channels, sections, 2)
    _SOS_KERNEL(np.ascontiguousarray(sos, np.float32), y, state)
    return y, np.moveaxis(state, 1, 0)


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS); -inf for silence.

    The definition and filter coefficients are pyloudnorm's ``Meter.integrated_loudness`` (400 ms blocks,
    75 % overlap, -70 LUFS absolute and -10 LU relative gates); the computation is vectorized with bounded
    memory (see :func:`k_weighted`). pyloudnorm itself makes several float64 copies (~0.5 GB for a 3-min
    stereo stem) and is slower; agreement with it is tested to 0.01 LU. Inputs shorter than one 400 ms block
    are measured zero-padded to one block.
    """
    return k_weighted(audio, sample_rate).lufs()


#: segments (between block edges: 100 ms) per chunk of the K-weighting pass; the filter state is kept at
#: every chunk start, so a change in a few places is re-measured from the chunk that holds it and the one
#: after (the filter's slowest mode, the 38 Hz high-pass, has decayed by e^-95 over one 400-ms chunk).
#: Short chunks keep that re-measurement short: a limiter acting every second or so would otherwise
#: re-filter the whole stem at each of the loudness stage's re-gains; the pass itself costs about the same
_SEGMENTS_PER_CHUNK = 4


@dataclass(frozen=True)
class KWeighted:
    """The K-weighted energy of a stem between consecutive BS.1770 block edges (every block's start and
    end: 100-ms segments), per channel, and the K filter's state at the start of every chunk of
    :data:`_SEGMENTS_PER_CHUNK` segments.

    Gives the integrated loudness at any gain (:meth:`lufs`), and that of a copy of the stem changed in a
    few places (a limiter's gain dips) by filtering only the chunks around the changes (:meth:`patched`):
    the K filter is linear and forgets within milliseconds, so the energies elsewhere stay what they were.
    """

    sample_rate: int
    n: int  # samples measured (a short input zero-padded to one block)
    edges: np.ndarray  # (n_edges,) sorted sample positions of block starts and ends
    block_edges: np.ndarray  # (2, n_blocks) index in ``edges`` of each block's start and end
    energies: np.ndarray  # (channels, n_edges - 1) float64 sums of the squared K-weighted signal
    states: np.ndarray  # (n_chunks, sections, channels, 2) float32 filter state at each chunk start

    def lufs(self, gain: float = 1.0) -> float:
        """Integrated loudness (LUFS) of the stem scaled by ``gain``; -inf for silence."""
        block = int(round(0.4 * self.sample_rate))
        cum = np.zeros((self.energies.shape[0], self.energies.shape[1] + 1))
        np.cumsum(self.energies * (gain * gain), axis=1, out=cum[:, 1:])
        z = (cum[:, self.block_edges[1]] - cum[:, self.block_edges[0]]) / block
        with np.errstate(divide="ignore"):
            lj = -0.691 + 10.0 * np.log10(z.sum(axis=0))
        gated = lj >= -70.0
        if not np.any(gated):
            return float("-inf")
        rel = -0.691 + 10.0 * np.log10(z[:, gated].mean(axis=1).sum()) - 10.0
        keep = gated & (lj > rel)
        if not np.any(keep):
            return float("-inf")
        return float(-0.691 + 10.0 * np.log10(z[:, keep].mean(axis=1).sum()))

    def chunk_bounds(self, c: int) -> tuple[int, int]:
        """Sample range of chunk ``c`` (from its first edge to the first edge of the next chunk)."""
        k = _SEGMENTS_PER_CHUNK
        return int(self.edges[c * k]), int(self.edges[min((c + 1) * k, self.edges.size - 1)])

    def patched(self, source, ranges) -> KWeighted:
        """The energies of a copy of the stem that differs from it only inside the sample ``ranges``
        ((start, end) pairs); ``source(a, b)`` returns that copy's samples a..b ((channels, b - a))."""
        k = _SEGMENTS_PER_CHUNK
        n_chunks = self.states.shape[0]
        chunk_of = lambda i: int(np.searchsorted(self.edges, i, side="right") - 1) // k  # noqa: E731
        spans: list[list[int]] = []  # chunk spans to re-filter; one chunk more after each change
        for a, b in sorted(ranges):
            c0, c1 = chunk_of(max(a, 0)), min(chunk_of(max(b - 1, 0)) + 1, n_chunks - 1)
            if spans and c0 <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], c1)
            else:
                spans.append([c0, c1])
        energies = self.energies.copy()
        sos = k_weighting_sos(self.sample_rate)
        for c0, c1 in spans:
            zi = self.states[c0]
            for c in range(c0, c1 + 1):
                zi = _filter_chunk(source, self, c, sos, zi, energies)
        return KWeighted(self.sample_rate, self.n, self.edges, self.block_edges, energies, self.states)


def _filter_chunk(source, kw: KWeighted, c: int, sos, zi, energies: np.ndarray) -> np.ndarray:
    """K-weight chunk ``c`` of every channel of ``source`` from state ``zi`` (sections, channels, 2), all
    channels in one call (each channel filtered on its own, as one call per channel would): the segment
    energies go into ``energies`` (channels, segments); returns the state at the chunk's end."""
    k = _SEGMENTS_PER_CHUNK
    a, b = kw.chunk_bounds(c)
    if b <= a:
        return zi
    y, zi = sosfilt(sos, source(a, b), zi)
    first = c * k
    local = kw.edges[first : min(first + k, kw.edges.size - 1)] - a
    energies[:, first : first + local.size] = np.add.reduceat(np.square(y, dtype=np.float64), local, axis=1)
    return zi


def k_weighted(audio: np.ndarray, sample_rate: int) -> KWeighted:
    """:class:`KWeighted` of a (channels, n) or (n,) stem: float32 K-weighting (second-order sections, run
    per channel chunk by chunk with the filter state carried over, so no filtered copy of the stem exists),
    float64 energies between the block edges."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    block = int(round(0.4 * sample_rate))
    if x.shape[-1] < block + 1:
        x = np.pad(x, ((0, 0), (0, block + 1 - x.shape[-1])))
    return _k_weighted_from(lambda a, b: x[:, a:b], x.shape[0], x.shape[-1], sample_rate, silent=not np.any(x))


def _k_weighted_from(source, channels: int, n: int, sample_rate: int, *, silent: bool = False) -> KWeighted:
    """:func:`k_weighted` of an ``n``-sample signal (n > one block) whose samples a..b are ``source(a, b)``
    ((channels, b - a) float32), asked for chunk by chunk in order; ``silent``: all zeros (not filtered)."""
    block = int(round(0.4 * sample_rate))
    n_blocks = int(round(((n / sample_rate) - 0.4) / 0.1)) + 1
    starts = np.round(np.arange(n_blocks) * (block / 4.0)).astype(np.int64)
    ends = np.minimum(starts + block, n)
    edges, inverse = np.unique(np.concatenate([starts, ends]), return_inverse=True)
    sos = k_weighting_sos(sample_rate)
    n_chunks = -(-(edges.size - 1) // _SEGMENTS_PER_CHUNK)
    energies = np.zeros((channels, edges.size - 1))
    states = np.zeros((max(n_chunks, 1), sos.shape[0], channels, 2), np.float32)
    kw = KWeighted(sample_rate, n, edges, inverse.reshape(2, n_blocks), energies, states)
    if silent:
        return kw
    zi = np.zeros(states.shape[1:], np.float32)
    for c in range(n_chunks):
        states[c] = zi
        zi = _filter_chunk(source, kw, c, sos, zi, energies)
    return kw


def summed_loudness(stems: Sequence[np.ndarray], sample_rate: int) -> float:
    """:func:`integrated_loudness` of the sum of equal-shape (channels, n) float32 stems, added in the given
    order chunk by chunk: the float32 sum ``total += stem`` makes in that order, without the summed copy."""
    n = stems[0].shape[-1]
    if n < int(round(0.4 * sample_rate)) + 1:  # shorter than a block: measured zero-padded, as a whole
        return integrated_loudness(np.sum(np.stack(stems), axis=0, dtype=np.float32), sample_rate)

    def source(a: int, b: int) -> np.ndarray:
        total = np.array(stems[0][:, a:b], np.float32)
        for x in stems[1:]:
            total += x[:, a:b]
        return total

    return _k_weighted_from(source, stems[0].shape[0], n, sample_rate).lufs()


# ---------------------------------------------------------------- STFT helpers


def frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(channels, n) -> (channels, n_frames, n_fft) frames; zero-padded so every sample is covered once."""
    n = x.shape[-1]
    n_frames = _n_frames(n, n_fft, hop)
    total = (n_frames - 1) * hop + n_fft
    if total > n:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, total - n)])
    shape = x.shape[:-1] + (n_frames, n_fft)
    strides = x.strides[:-1] + (x.strides[-1] * hop, x.strides[-1])
    return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)


def _n_frames(n: int, n_fft: int, hop: int) -> int:
    return max(1, int(np.ceil(max(n - n_fft, 0) / hop)) + 1)


def _frame_chunks(source, n: int, n_fft: int, hop: int, frames_per_chunk: int):
    """:func:`frames` in chunks of ``frames_per_chunk``: yields (first frame index, (..., k, n_fft) view).

    ``source(a, b)`` returns samples a..b (last axis) of an ``n``-sample signal; only a chunk that runs past
    the end is copied (zero-padded), never the whole signal.
    """
    n_frames = _n_frames(n, n_fft, hop)
    for i in range(0, n_frames, frames_per_chunk):
        k = min(frames_per_chunk, n_frames - i)
        a = i * hop
        b = min(a + (k - 1) * hop + n_fft, n)
        yield i, frames(source(a, b), n_fft, hop)[..., :k, :]


def _stft_power_chunks(audio: np.ndarray, n_fft: int, hop: int):
    """Yields (first frame index, float32 |STFT|^2 of a chunk of frames (channels, k, n_fft//2+1))."""
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    x = np.asarray(audio, np.float32)
    step = max(1, _STFT_CHUNK // n_fft)  # frames per chunk: temporaries of a few MB whatever the length
    for i, fr in _frame_chunks(lambda a, b: x[..., a:b], x.shape[-1], n_fft, hop, step):
        spec = scipy.fft.rfft(fr * win, axis=-1)  # one thread: stems already run in parallel
        yield i, np.add(np.square(spec.real), np.square(spec.imag))


def stft_power(audio: np.ndarray, n_fft: int = C.ANALYSIS_FFT, hop: int = C.ANALYSIS_HOP) -> np.ndarray:
    """|STFT|^2 with a periodic Hann window: (channels, n_frames, n_fft//2+1), float32.

    The whole-stem statistics need only sums over frames: :func:`stft_power_sums` gives them without
    materialising this array (64 MB for a 3-min stereo stem).
    """
    x = np.asarray(audio, np.float32)
    out = np.empty(x.shape[:-1] + (_n_frames(x.shape[-1], n_fft, hop), n_fft // 2 + 1), np.float32)
    for i, p in _stft_power_chunks(x, n_fft, hop):
        out[..., i : i + p.shape[-2], :] = p
    return out


@dataclass(frozen=True)
class PowerSums:
    """Per-bin sums over all STFT frames, float64, on the rfft grid of ``n_fft``.

    ``power`` is (channels, bins) Σ|X_c|²; ``cross`` is (bins,) Σ2|L||R| (stereo only, else None).
    """

    power: np.ndarray
    cross: np.ndarray | None
    n_frames: int

    @property
    def mean_power(self) -> np.ndarray:
        """Mean |X|² per bin over frames and channels (what ``spectrum_from_power`` averages)."""
        return self.power.sum(axis=0) / (self.power.shape[0] * self.n_frames)


def stft_power_sums(audio: np.ndarray, n_fft: int = C.ANALYSIS_FFT, hop: int = C.ANALYSIS_HOP) -> PowerSums:
    """Sums over frames of :func:`stft_power`, accumulated chunk by chunk (bounded memory).

    Args:
        audio: (channels, n) or (n,) audio.
    """
    x = np.asarray(audio, np.float32)
    x2 = x if x.ndim == 2 else x.reshape(1, -1)
    power = np.zeros((x2.shape[0], n_fft // 2 + 1))
    cross = np.zeros(n_fft // 2 + 1) if x2.shape[0] == 2 else None
    for _, p in _stft_power_chunks(x2, n_fft, hop):
        power += p.sum(axis=1, dtype=np.float64)
        if cross is not None:
            cross += (2.0 * np.sqrt(p[0] * p[1])).sum(axis=0, dtype=np.float64)
    return PowerSums(power, cross, _n_frames(x2.shape[-1], n_fft, hop))


# ---------------------------------------------------------------- spectrum and panning


def spectrum_from_power(power: np.ndarray, sample_rate: int, n_fft: int, loudness_lufs: float) -> np.ndarray:
    """Long-term band spectrum (dB) from STFT power, level-referenced to SPECTRUM_REF_LUFS.

    Reference: mean |STFT| per linear bin of the stem normalized to -30 LUFS. Here: mean *power* over frames
    and channels per 1/6-octave band (power averaging is what loudness and EQ act on), then dB; the -30 LUFS
    normalization is a dB offset, so no second pass over the audio is needed.
    """
    mean_power = power.reshape(-1, power.shape[-1]).mean(axis=0)
    return spectrum_from_mean_power(mean_power, sample_rate, n_fft, loudness_lufs)


def spectrum_from_mean_power(
    mean_power: np.ndarray, sample_rate: int, n_fft: int, loudness_lufs: float
) -> np.ndarray:
    """:func:`spectrum_from_power` from the per-bin mean power (e.g. ``PowerSums.mean_power``)."""
    bands = weigh_bins(band_weights(n_fft, sample_rate), mean_power)
    offset = (C.SPECTRUM_REF_LUFS - loudness_lufs) if np.isfinite(loudness_lufs) else 0.0
    return 10.0 * np.log10(bands + _EPS) + offset


def phi_from_power(power: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """Per-band stereo similarity φ = 2|L||R| / (|L|^2 + |R|^2), energy-weighted over frames and bins.

    Reference: φ per linear bin averaged over frames with equal weight, so silent frames (φ of noise) count as
    much as the music. Energy weighting measures the panning of what is heard.
    """
    pl, pr = power[0], power[1]
    energy = pl + pr
    phi = 2.0 * np.sqrt(pl * pr) / (energy + _EPS)
    return phi_from_sums((phi * energy).sum(axis=0), energy.sum(axis=0), sample_rate, n_fft)


def phi_from_sums(cross_sum: np.ndarray, energy_sum: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """Band φ from per-bin sums over frames of 2|L||R| (= φ·energy) and |L|²+|R|² (the running-stats form)."""
    w = band_weights(n_fft, sample_rate)
    num = weigh_bins(w, cross_sum)
    den = weigh_bins(w, energy_sum)
    return np.where(den > _EPS, num / np.maximum(den, _EPS), 1.0)


def measure_spectrum(audio: np.ndarray, sample_rate: int, loudness_lufs: float | None = None) -> np.ndarray:
    if loudness_lufs is None:
        loudness_lufs = integrated_loudness(audio, sample_rate)
    return spectrum_from_mean_power(
        stft_power_sums(audio).mean_power, sample_rate, C.ANALYSIS_FFT, loudness_lufs
    )


def measure_phi(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    return phi_from_power_sums(stft_power_sums(audio), sample_rate, C.ANALYSIS_FFT)


def phi_from_power_sums(sums: PowerSums, sample_rate: int, n_fft: int) -> np.ndarray:
    """:func:`phi_from_power` from :class:`PowerSums` (stereo)."""
    return phi_from_sums(sums.cross, sums.power.sum(axis=0), sample_rate, n_fft)


# ---------------------------------------------------------------- onset-peak dynamics


def onset_boundaries(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset sample positions (sorted, starting with 0) by half-wave-rectified log spectral flux.

    Reference: aubio 'hfc' with buffer = hop = 1024 (no overlap). Here 1024/256 frames (75 % overlap),
    an adaptive threshold (moving median + 0.1 of the flux range) and a 50 ms minimum gap.
    """
    return onset_boundaries_from(lambda a, b: audio[:, a:b].mean(axis=0), audio.shape[-1], sample_rate)


def onset_boundaries_from(mono_at, n: int, sample_rate: int) -> np.ndarray:
    """:func:`onset_boundaries` of an ``n``-sample signal whose channel mean over samples a..b is
    ``mono_at(a, b)`` (b - a,); the mono signal is made chunk by chunk, never whole."""
    if n < C.ONSET_FFT:
        return np.array([0], dtype=np.int64)
    win = np.hanning(C.ONSET_FFT + 1)[:-1].astype(np.float32)
    parts = [np.zeros(1)]
    prev = None
    # chunks of frames: bounded temporaries on long stems
    for _, fr in _frame_chunks(
        lambda a, b: np.asarray(mono_at(a, b), np.float32), n, C.ONSET_FFT, C.ONSET_HOP, _ONSET_FRAMES
    ):
        logmag = np.abs(scipy.fft.rfft(fr * win, axis=-1))  # one thread: stems already run in parallel
        # log(1 + 100 |X|) less its constant log(100), which every frame-to-frame rise cancels; np.log has a
        # vectorized float32 loop, log1p none (several times slower)
        logmag += 0.01
        np.log(logmag, out=logmag)
        rise = np.empty_like(logmag)  # frame-to-frame rise, from the previous chunk's last frame on
        np.subtract(logmag[1:], logmag[:-1], out=rise[1:])
        if prev is not None:
            np.subtract(logmag[0], prev, out=rise[0])
        else:
            rise[0] = 0.0
        np.maximum(rise, 0.0, out=rise)
        parts.append(rise.sum(axis=1)[0 if prev is not None else 1 :])
        prev = logmag[-1].copy()
    flux = np.concatenate(parts)
    if flux.max() <= 0:
        return np.array([0], dtype=np.int64)
    flux /= flux.max()
    gap = max(1, int(C.ONSET_MIN_GAP_S * sample_rate / C.ONSET_HOP))
    thresh = median_filter(flux, size=2 * gap * 4 + 1, mode="nearest") + 0.1
    local_max = maximum_filter1d(flux, size=2 * gap + 1, mode="nearest") == flux
    idx = np.flatnonzero(local_max & (flux > thresh))
    # enforce the minimum gap after plateaus
    keep: list[int] = []
    for i in idx:
        if not keep or i - keep[-1] >= gap:
            keep.append(int(i))
    pos = np.asarray(keep, dtype=np.int64) * C.ONSET_HOP
    return np.unique(np.concatenate([[0], pos[pos < n]]))


def onset_peak_stats(audio: np.ndarray, boundaries: np.ndarray) -> tuple[float, float]:
    """(mean, std) in dB of the largest |x| (both channels, linked) per inter-onset segment, top quartile.

    The caller peak-normalizes first (see :func:`measure_dynamics`). Percentile over all segments, then
    mean/std of those above it (reference: 75th percentile, per channel then averaged).
    """
    return envelope_peak_stats(linked_envelope(audio), boundaries)


def envelope_peak_stats(env: np.ndarray, boundaries: np.ndarray) -> tuple[float, float]:
    """:func:`onset_peak_stats` of a linked envelope ``env`` (n,) = max over channels of |x|."""
    return peak_stats_db(np.maximum.reduceat(env, boundaries))


def segment_peaks(env_at, n: int, boundaries: np.ndarray, edges=None) -> np.ndarray:
    """``np.maximum.reduceat(env, boundaries)`` of an ``n``-sample envelope made chunk by chunk:
    ``env_at(a, b)`` returns its samples a..b, called once per chunk in order (``edges``: the chunk
    edges, default every _CHUNK_SAMPLES), so the envelope is never whole."""
    edges = [*range(0, n, _CHUNK_SAMPLES), n] if edges is None else edges
    peaks = None
    for a, b in zip(edges[:-1], edges[1:]):
        c = env_at(a, b)
        if peaks is None:
            peaks = np.zeros(boundaries.size, c.dtype)
        first = int(np.searchsorted(boundaries, a, side="right")) - 1  # the segments that meet a..b
        last = int(np.searchsorted(boundaries, b, side="left"))
        starts = np.maximum(boundaries[first:last], a) - a
        np.maximum(peaks[first:last], np.maximum.reduceat(c, starts), out=peaks[first:last])
    return peaks


def peak_stats_db(peaks: np.ndarray) -> tuple[float, float]:
    """(mean, std) dB of the per-segment peaks above the DYNAMICS_PERCENTILE (all where none is)."""
    peaks_db = 20.0 * np.log10(np.maximum(peaks, 1e-6))
    sel = peaks_db[peaks_db > np.percentile(peaks_db, C.DYNAMICS_PERCENTILE)]
    if sel.size == 0:
        sel = peaks_db
    return float(sel.mean()), float(sel.std())


def linked_envelope(audio: np.ndarray, gain: np.float32 | None = None) -> np.ndarray:
    """max over channels of |x|: (channels, n) -> (n,), computed in chunks (no |x| copy of the stem).

    With ``gain``, that of ``(audio * gain).astype(float32)`` (element for element the same arithmetic),
    without the scaled copy.
    """
    n = audio.shape[-1]
    env = None
    for a in range(0, n, _CHUNK_SAMPLES):
        c = linked_envelope_at(audio, gain, a, min(a + _CHUNK_SAMPLES, n))
        if env is None:
            env = np.empty(n, c.dtype)
        env[a : a + c.shape[-1]] = c
    return env


def linked_envelope_at(audio: np.ndarray, gain: np.float32 | None, a: int, b: int) -> np.ndarray:
    """Samples a..b of ``linked_envelope(audio, gain)``: for a stereo stem max(|L|, |R|) * gain, the same
    values without the scaled copy (|x| * g rounds monotonically, so max_c |x_c * g| == max_c |x_c| * g)."""
    if audio.ndim != 2 or audio.shape[0] != 2 or audio.dtype != np.float32:
        return np.abs(_scaled(audio, gain, a, b)).max(axis=0)
    env = np.abs(audio[0, a:b])
    np.maximum(env, np.abs(audio[1, a:b]), out=env)
    return env if gain is None else np.multiply(env, gain, out=env, casting="unsafe")


def _scaled(audio: np.ndarray, gain: np.float32 | None, a: int, b: int) -> np.ndarray:
    """Samples a..b of ``(audio * gain).astype(float32)`` (``audio`` itself where gain is None)."""
    c = audio[:, a:b]
    return c if gain is None else (c * gain).astype(np.float32, copy=False)


def _scaled_mono(audio: np.ndarray, gain: np.float32 | None, a: int, b: int) -> np.ndarray:
    """Samples a..b of ``_scaled(audio, gain).mean(axis=0)``: for a stereo float32 stem (L g + R g) / 2, the
    same float32 arithmetic without the (channels, b - a) copy."""
    if audio.ndim != 2 or audio.shape[0] != 2 or audio.dtype != np.float32:
        return _scaled(audio, gain, a, b).mean(axis=0)
    if gain is None:
        m = audio[0, a:b] + audio[1, a:b]
    else:
        m = audio[0, a:b] * gain
        m += audio[1, a:b] * gain
    m *= np.float32(0.5)
    return m


def peak_normalize_gain_db(audio: np.ndarray, level_db: float = C.DYNAMICS_PEAK_NORM_DB) -> float | None:
    """Gain (dB) that :func:`peak_normalize` applies; None for silence (left unchanged)."""
    return peak_gain_db(max(float(audio.max()), -float(audio.min())) if audio.size else 0.0, level_db)


def peak_gain_db(peak: float, level_db: float = C.DYNAMICS_PEAK_NORM_DB) -> float | None:
    """:func:`peak_normalize_gain_db` of a signal whose sample peak |x| is ``peak``."""
    p = 20.0 * np.log10(peak) if peak > 0 else float("-inf")
    return float(level_db - p) if np.isfinite(p) else None


def db_to_gain32(gain_db: float | None) -> np.float32 | None:
    """The float32 factor :func:`peak_normalize` scales by (None stays None)."""
    return None if gain_db is None else np.float32(10 ** (gain_db / 20))


def peak_normalize(audio: np.ndarray, level_db: float = C.DYNAMICS_PEAK_NORM_DB) -> tuple[np.ndarray, float]:
    """Scale to a sample peak of ``level_db``; returns (audio, gain_db). Silence is returned unchanged."""
    g = peak_normalize_gain_db(audio, level_db)
    if g is None:
        return audio, 0.0
    return (audio * db_to_gain32(g)).astype(np.float32, copy=False), g


def peak_normalized_onsets(
    audio: np.ndarray, sample_rate: int, level_db: float = C.DYNAMICS_PEAK_NORM_DB
) -> tuple[np.ndarray, np.ndarray, float]:
    """(onset boundaries, linked envelope (n,), gain_db) of ``peak_normalize(audio, level_db)[0]``, computed
    chunk by chunk without the scaled copy (the same values, element for element)."""
    bounds, gain, gain_db = peak_normalized_bounds(audio, sample_rate, level_db)
    return bounds, linked_envelope(audio, gain), gain_db


def peak_normalized_bounds(
    audio: np.ndarray, sample_rate: int, level_db: float = C.DYNAMICS_PEAK_NORM_DB
) -> tuple[np.ndarray, np.float32 | None, float]:
    """(onset boundaries, float32 gain or None, gain_db) of ``peak_normalize(audio, level_db)[0]``: what
    :func:`peak_normalized_onsets` gives but the envelope (``linked_envelope_at`` makes it by pieces)."""
    g = peak_normalize_gain_db(audio, level_db)
    gain = db_to_gain32(g)
    bounds = onset_boundaries_from(lambda a, b: _scaled_mono(audio, gain, a, b), audio.shape[-1], sample_rate)
    return bounds, gain, (0.0 if g is None else g)


def measure_dynamics(audio: np.ndarray, sample_rate: int, boundaries: np.ndarray | None = None):
    """(mean, std) onset-peak dB of the stem peak-normalized to -10 dBFS (no scaled copy of the stem, no
    whole envelope: the segment peaks are taken chunk by chunk)."""
    if boundaries is None:
        boundaries, gain, _ = peak_normalized_bounds(audio, sample_rate)
    else:
        gain = db_to_gain32(peak_normalize_gain_db(audio))
    env_at = lambda a, b: linked_envelope_at(audio, gain, a, b)  # noqa: E731
    return peak_stats_db(segment_peaks(env_at, audio.shape[-1], boundaries))


# ---------------------------------------------------------------- all at once


def is_silent(audio: np.ndarray) -> bool:
    return peak_db(audio) < C.SILENCE_PEAK_DB


def active_seconds(audio: np.ndarray, sample_rate: int, block: int = 1 << 16) -> float:
    """Time (s) during which any channel of ``audio`` (channels, n) is above ``SILENCE_PEAK_DB`` or within
    ``RELATIVE_SILENCE_DB`` of the stem's own peak, whichever is lower (a quiet recording and a stem with a few
    huge spikes both count their body), counted in blocks so no full-length temporary is made."""
    x = np.atleast_2d(audio)
    threshold = 10.0 ** (min(C.SILENCE_PEAK_DB, peak_db(x) - C.RELATIVE_SILENCE_DB) / 20.0)
    active = 0
    for i in range(0, x.shape[-1], block):
        active += int(np.count_nonzero(np.max(np.abs(x[:, i : i + block]), axis=0) > threshold))
    return active / sample_rate


def measure(audio: np.ndarray, sample_rate: int) -> StemFeatures:
    """All features of a (2, n) stem from one analysis STFT. Silent stems give ``silent=True`` (and NaNs)."""
    n_bands = band_centers_hz().size
    if is_silent(audio):
        nan = np.full(n_bands, np.nan)
        return StemFeatures(float("-inf"), nan, nan, float("nan"), float("nan"), silent=True)
    lufs = integrated_loudness(audio, sample_rate)
    sums = stft_power_sums(audio)
    spec = spectrum_from_mean_power(sums.mean_power, sample_rate, C.ANALYSIS_FFT, lufs)
    phi = phi_from_power_sums(sums, sample_rate, C.ANALYSIS_FFT)
    mean_db, std_db = measure_dynamics(audio, sample_rate)
    return StemFeatures(lufs, spec, phi, mean_db, std_db)


def mean_features(items: Sequence[StemFeatures]) -> StemFeatures:
    """Dataset average of non-silent stems: arithmetic mean of LUFS, dB spectra (geometric), φ, onset stats."""
    live = [f for f in items if not f.silent]
    if not live:
        raise ValueError("mean_features: no non-silent stems to average")
    return StemFeatures(
        float(np.mean([f.loudness_lufs for f in live])),
        np.mean([f.spectrum_db for f in live], axis=0),
        np.mean([f.phi for f in live], axis=0),
        float(np.mean([f.onset_peak_mean_db for f in live])),
        float(np.mean([f.onset_peak_std_db for f in live])),
    )
