"""Per-track filters for many stereo tracks at once: one uniformly partitioned convolution over every channel,
one stereo-linked filter per track, filter changes cross-faded over one block for the changed tracks only.

The track-level console of the real-time engine (:mod:`fxmix.host_bridge.console_chain`) runs its per-track
EQ with this: the multiply-accumulate is batched across tracks (a few numpy calls per block, whatever the
track count), and a track whose filter changes costs a second multiply-accumulate for that track alone in
the block where it changes, so a new set of decisions does not double the whole block's cost. The FFTs and the
multiply-accumulate run in torch on the same memory as the numpy arrays (one multiply over all partitions
and one sum, without the interpreter lock: about a third less time than numpy's per-partition loop at 64
tracks, and another thread of the process runs meanwhile).

streaming-safe: yes (blocks of exactly ``part`` samples).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .conv import PartitionedConv, fade_ramp


def track_filter_spectra(taps: np.ndarray, part: int) -> np.ndarray:
    """(K, part+1) complex64 partition spectra of ``taps`` (zero-padded to K x part; a linear-phase FIR keeps
    its (len - 1) / 2 samples of delay) for :meth:`TrackConv.set_filter`."""
    k = -(-len(taps) // part)
    padded = np.zeros(k * part)
    padded[: len(taps)] = taps
    return scipy.fft.rfft(padded.reshape(k, part), 2 * part, axis=-1).astype(np.complex64)


class TrackConv(PartitionedConv):
    """Uniformly partitioned overlap-save convolution of ``n_tracks`` stereo tracks, one filter per track.

    Args:
        n_tracks: tracks (each 2 channels, filtered by the same filter: stereo-linked).
        part: block (= partition) length in samples.
        n_parts: partitions K (filter length K x part); a new track's filter is a unit impulse.

    streaming-safe: yes (blocks of exactly ``part`` samples).
    """

    def __init__(self, n_tracks: int, part: int, n_parts: int):
        super().__init__(2 * n_tracks, part, n_parts)
        self.n_tracks = n_tracks
        self.spectra = np.zeros((n_parts, n_tracks, 1, part + 1), np.complex64)
        self.spectra[0] = 1.0  # unit impulse: a flat filter until one is set
        self._pending: dict[int, np.ndarray] = {}
        self._ramp = fade_ramp(part)
        import torch  # here, not at module level: the rest of fxmix.dsp does not need it

        self._torch = torch
        self._t_seg, self._t_fdl2 = torch.from_numpy(self._seg), torch.from_numpy(self._fdl2)
        self._t_spectra = torch.from_numpy(self.spectra)
        self._t_prod = torch.empty((n_parts, n_tracks, 2, part + 1), dtype=torch.complex64)
        self._t_acc = torch.empty((n_tracks, 2, part + 1), dtype=torch.complex64)

    def set_filter(self, track: int, spectra: np.ndarray) -> None:
        """Queue ``spectra`` (K, part+1) as ``track``'s filter from the next block (cross-faded over it).
        Thread-safe against :meth:`process_tracks` (one dict assignment)."""
        if spectra.shape != (self.n_parts, self.part + 1):
            raise ValueError(f"filter spectra must be {(self.n_parts, self.part + 1)}, got {spectra.shape}")
        self._pending[int(track)] = np.asarray(spectra, np.complex64)

    def apply_pending(self) -> None:
        """Take every queued filter now, without a cross-fade (before any audio)."""
        self._take_changes(None)

    def process_tracks(self, x: np.ndarray, max_changes: int | None = None) -> np.ndarray:
        """Filter one block ``x`` (n_tracks, 2, part) -> (n_tracks, 2, part) float32. At most ``max_changes``
        queued filter changes are taken in this block (the rest wait for the next ones), bounding its cost."""
        t, p = self.n_tracks, self.part
        self._seg[:, :p] = self.prev
        self._seg[:, p:] = x.reshape(2 * t, p)
        self.prev[:] = self._seg[:, p:]
        self._pos = (self._pos - 1) % self.n_parts
        torch, pos, k = self._torch, self._pos, self.n_parts
        spec = torch.fft.rfft(self._t_seg, dim=-1)
        self._t_fdl2[pos] = spec
        self._t_fdl2[pos + k] = spec
        fdl = self.fdl.reshape(k, t, 2, p + 1)
        changed, old = self._take_changes(max_changes)
        t_fdl = self._t_fdl2[pos : pos + k].view(k, t, 2, p + 1)
        torch.mul(t_fdl, self._t_spectra, out=self._t_prod)
        torch.sum(self._t_prod, 0, out=self._t_acc)
        y = torch.fft.irfft(self._t_acc, n=2 * p, dim=-1)[..., p:].numpy()
        if changed:
            y0 = scipy.fft.irfft((fdl[:, changed] * old).sum(axis=0), axis=-1)[..., p:]
            y[changed] = y0 + (y[changed] - y0) * self._ramp
        return y.astype(np.float32, copy=False)

    def _take_changes(self, max_changes: int | None) -> tuple[list[int], np.ndarray | None]:
        if not self._pending:
            return [], None
        keys = list(self._pending)[: max_changes or None]
        old = self.spectra[:, keys].copy()
        for k in keys:
            self.spectra[:, k, 0] = self._pending.pop(k)
        return keys, old

    def reset(self) -> None:
        super().reset()
        self.prev[:] = 0
