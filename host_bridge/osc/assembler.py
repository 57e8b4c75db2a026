"""Block assembly of one session's stream: per-track blocks in (any order within a window), complete
multitrack blocks out in sequence order. Pure (no threads, no sockets); the bridge calls it under its lock."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..samples import MAX_SAMPLE, clip_huge, within_bound


@dataclass(slots=True)
class _Pending:
    blocks: np.ndarray  # (n_tracks, 2, block_samples) float32
    got: bytearray  # (n_tracks,) 1 where the track is in
    t_first: float
    count: int = 0  # tracks in


@dataclass
class AssemblerStats:
    """Counters of one session's block stream (track blocks unless named otherwise)."""

    received: int = 0
    mixed_blocks: int = 0  # released to the worker (complete or zero-filled)
    zero_filled: int = 0
    late: int = 0
    duplicates: int = 0
    reordered: int = 0
    seq_jumps: int = 0


class BlockAssembler:
    """Collects per-track blocks into complete multitrack blocks, in sequence order.

    A block ``seq`` is released when all its tracks are in. Blocks may arrive out of order within
    ``window_blocks``: once a block ``window_blocks`` ahead of the oldest incomplete one arrives (or the
    oldest pending data is older than a timeout, see :meth:`flush_stale`), the oldest is released with
    its missing tracks zero-filled. Blocks older than the next one to release are dropped (late), as are
    repeated (seq, track) pairs (duplicates). A jump ahead by more than ``max_gap_blocks``, or back by more
    than ``window_blocks`` (a host whose sequence numbers restarted, e.g. at 0), resynchronises there.

    Args:
        n_tracks: tracks per block.
        block_samples: samples per channel per block.
        window_blocks: reorder window (blocks).
        max_gap_blocks: larger forward jumps restart the stream at the new number instead of
            zero-filling every block in between.

    streaming-safe: yes.
    """

    def __init__(self, n_tracks: int, block_samples: int, window_blocks: int = 8, max_gap_blocks: int = 256):
        self.n_tracks = int(n_tracks)
        self.block_samples = int(block_samples)
        self.window_blocks = max(1, int(window_blocks))
        self.max_gap_blocks = max(self.window_blocks, int(max_gap_blocks))
        self.stats = AssemblerStats()
        self.events: list[tuple[str, str]] = []
        self.reset()

    def reset(self) -> None:
        """Forget pending blocks; the next expected sequence number is 0 (counters are kept)."""
        self.next_seq = 0
        self.max_seen = -1
        self._pending: dict[int, _Pending] = {}

    def _release(self, seq: int) -> tuple[int, np.ndarray]:
        p = self._pending.pop(seq, None)
        if p is None:
            missing = self.n_tracks
            blocks = np.zeros((self.n_tracks, 2, self.block_samples), np.float32)
        else:
            missing = self.n_tracks - p.count
            blocks = p.blocks
            if not within_bound(blocks):  # one test for the whole block: NaN, inf and huge samples
                self._sanitise(seq, blocks)
        if missing:
            self.stats.zero_filled += missing
            self.events.append(("missing", f"block {seq}: {missing} of {self.n_tracks} tracks zero-filled"))
        self.stats.mixed_blocks += 1
        self.next_seq = seq + 1
        return seq, blocks

    def _sanitise(self, seq: int, blocks: np.ndarray) -> None:
        """In place, per track: a block with NaN/inf is zeroed, finite samples beyond ``MAX_SAMPLE`` are
        clipped to it (events ``non_finite`` / ``clipped``)."""
        for track, block in enumerate(blocks):
            if within_bound(block):
                continue
            where = f"block {seq} track {track}"
            if not (np.isfinite(block.max()) and np.isfinite(block.min())):
                block[:] = 0.0
                self.events.append(("non_finite", where))
                continue
            peak = float(np.abs(block).max())
            block[:], _ = clip_huge(block)
            self.events.append(("clipped", f"{where}: peak {peak:.3g}, clipped to {MAX_SAMPLE:g}"))

    def _drain(self) -> list[tuple[int, np.ndarray]]:
        out = []
        while True:
            p = self._pending.get(self.next_seq)
            if p is not None and p.count == self.n_tracks:
                out.append(self._release(self.next_seq))
            elif self.max_seen - self.next_seq >= self.window_blocks:
                out.append(self._release(self.next_seq))
            else:
                return out

    def push(
        self, seq: int, track: int, audio: np.ndarray, now: float | None = None
    ) -> list[tuple[int, np.ndarray]]:
        """Add one track block; return the complete blocks now ready, as ``[(seq, (n_tracks, 2, B))]``."""
        now = time.monotonic() if now is None else now
        self.stats.received += 1
        if seq < self.next_seq - self.window_blocks:
            self._restart(seq, f"block {seq} while expecting {self.next_seq}; the stream restarted there")
        elif seq < self.next_seq:
            self.stats.late += 1
            self.events.append(
                ("late", f"block {seq} track {track} arrived after block {self.next_seq - 1} was mixed")
            )
            return []
        if seq - self.next_seq > self.max_gap_blocks:
            self._restart(seq, f"block {seq} while expecting {self.next_seq}; restarting there")
        p = self._pending.get(seq)
        if p is None:
            p = _Pending(np.zeros((self.n_tracks, 2, self.block_samples), np.float32), bytearray(self.n_tracks), now)
            self._pending[seq] = p
        elif p.got[track]:
            self.stats.duplicates += 1
            self.events.append(("duplicate", f"block {seq} track {track} received twice"))
            return []
        p.blocks[track] = audio
        p.got[track] = 1
        p.count += 1
        if seq < self.max_seen:
            self.stats.reordered += 1
        self.max_seen = max(self.max_seen, seq)
        return self._drain()

    def _restart(self, seq: int, detail: str) -> None:
        self.stats.seq_jumps += 1
        self.events.append(("seq_jump", detail))
        self._pending.clear()
        self.next_seq = seq
        self.max_seen = seq - 1

    def flush_stale(self, now: float, timeout_s: float) -> list[tuple[int, np.ndarray]]:
        """Release the oldest block (zero-filled) while some pending data is older than ``timeout_s``."""
        out = []
        while self._pending:
            oldest = min(p.t_first for p in self._pending.values())
            if now - oldest < timeout_s:
                break
            out.append(self._release(self.next_seq))
            out.extend(self._drain())
        return out

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """Release every pending block up to the newest one seen, zero-filling what is missing."""
        out = []
        while self._pending:
            out.append(self._release(self.next_seq))
            out.extend(self._drain())
        return out

    @property
    def oldest_pending_t(self) -> float | None:
        return min((p.t_first for p in self._pending.values()), default=None)
