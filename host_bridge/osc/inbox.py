"""The hand-over between the receive thread and the worker: the open sessions' slots and the bounded queue of
requests, under one lock, so the queue's order is the order of the slots' and assemblers' changes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from .assembler import BlockAssembler
from .log import ErrorLog
from .requests import MixRequest, Request, SlotConfig

#: ``step(assembler) -> [(seq, (n_tracks, 2, block_samples))]``: one change of an assembler that may complete
#: blocks (a pushed track block, a flush, the reorder timeout).
ReleaseStep = Callable[[BlockAssembler], list[tuple[int, np.ndarray]]]


class Inbox:
    """Slots of the open sessions and the bounded request queue of the worker.

    Args:
        errors: where dropped requests are counted.
        queue_size: most requests waiting for the worker.
        max_queued_bytes: most audio (bytes of complete blocks) waiting for the worker.

    ``lock`` guards ``slots``, the queue's order and byte count, and every session's assembler. The receive
    thread reads ``slots`` without it (one dict look-up per datagram); it changes only under it.
    """

    def __init__(self, errors: ErrorLog, queue_size: int, max_queued_bytes: int) -> None:
        self.errors = errors
        self.lock = threading.Lock()
        self.slots: dict[int, SlotConfig] = {}
        self._queue: queue.Queue[Request] = queue.Queue(maxsize=int(queue_size))
        self.max_queued_bytes = int(max_queued_bytes)
        self.queued_bytes = 0

    def qsize(self) -> int:
        return self._queue.qsize()

    def put(self, request: Request) -> bool:
        """Queue ``request`` for the worker (the caller holds :attr:`lock`); False when the queue, or its audio
        budget, is full."""
        size = request.blocks.nbytes if type(request) is MixRequest else 0
        if size and self.queued_bytes + size > self.max_queued_bytes:
            return False
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            return False
        self.queued_bytes += size
        return True

    def submit(self, request: Request) -> None:
        """Queue ``request``, or count it as dropped when the queue is full."""
        with self.lock:
            ok = self.put(request)
        if not ok:
            self.errors.report("queue_full", f"{self.qsize()} messages waiting; dropped {request.kind}")

    def release(self, session: int, slot: SlotConfig, step: ReleaseStep, t: float) -> None:
        """Run ``step(assembler)`` and queue the complete blocks it returns, in one step under the lock (a
        stale release on the worker cannot interleave with the receive thread's); report after."""
        with self.lock:
            if self.slots.get(session) is not slot:  # closed or re-opened meanwhile: nothing to release
                return
            ready = step(slot.assembler)
            events, dropped = self._queue_ready(session, slot, ready, t)
        self._report(session, events, dropped)

    def push_block(
        self, session: int, slot: SlotConfig, seq: int, track: int, block: np.ndarray, t: float
    ) -> None:
        """:meth:`release` of one pushed track block (the receive thread's per-datagram call: no closure, and
        no list built unless a block completes or something is reported)."""
        with self.lock:
            if self.slots.get(session) is not slot:
                return
            asm = slot.assembler
            ready = asm.push(seq, track, block, t)
            if not ready and not asm.events:
                return
            events, dropped = self._queue_ready(session, slot, ready, t)
        self._report(session, events, dropped)

    def _queue_ready(
        self, session: int, slot: SlotConfig, ready: list[tuple[int, np.ndarray]], t: float
    ) -> tuple[list[tuple[str, str]], list[int]]:
        """Queue released blocks (the caller holds the lock); returns the assembler's events and the blocks
        the queue had no room for."""
        asm = slot.assembler
        events = asm.events
        if events:
            asm.events = []
        dropped = [seq for seq, blocks in ready if not self.put(MixRequest(session, slot, seq, blocks, t))]
        return events, dropped

    def _report(self, session: int, events: list[tuple[str, str]], dropped: list[int]) -> None:
        for kind, detail in events:
            self.errors.report(kind, f"session {session} {detail}")
        if dropped:
            self.errors.report(
                "queue_full",
                f"session {session}: {self.qsize()} messages / {self.queued_bytes >> 20} MiB of audio "
                f"waiting; dropped block(s) {dropped[0]}..{dropped[-1]}",
            )

    def get(self, timeout_s: float) -> Request | None:
        """The next request (None after ``timeout_s`` without one); its audio leaves the byte budget."""
        try:
            request = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if type(request) is MixRequest:
            with self.lock:
                self.queued_bytes -= request.blocks.nbytes
        return request

    def task_done(self) -> None:
        self._queue.task_done()

    def clear(self) -> None:
        """Drop every waiting request."""
        with self.lock:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self.queued_bytes = 0

    def drop_slot(self, session: int, slot: SlotConfig) -> None:
        """Forget ``session``'s slot if it is still ``slot`` (an opening whose engine failed)."""
        with self.lock:
            if self.slots.get(session) is slot:
                del self.slots[session]

    def oldest_pending_t(self) -> float | None:
        """When the oldest incomplete block of any session got its first track (None: nothing pending)."""
        with self.lock:
            return min(
                (t for slot in self.slots.values() if (t := slot.assembler.oldest_pending_t) is not None),
                default=None,
            )

    def slots_with_pending(self) -> list[tuple[int, SlotConfig]]:
        with self.lock:
            return [
                (sid, slot) for sid, slot in self.slots.items() if slot.assembler.oldest_pending_t is not None
            ]
