"""Real-time OSC bridge: DAW track blocks in over UDP, mixed blocks and parameters out.

Receive path (one thread, never blocks on processing)::

    datagram -> allowlist -> parse (python-osc) -> ROUTES[address] -> type check -> handler
             -> per-session BlockAssembler (reorder by sequence number, zero-fill missing tracks,
                drop duplicates/late blocks)
             -> bounded queue of complete blocks -> worker thread: Session.process
             -> /fxmix/mix to the session's reply address (+ periodic /fxmix/params, Reaper feedback)

Track blocks are assembled on the receive thread, so the worker wakes once per multitrack block, not
once per track datagram (that hand-over, 16 thread switches per block, was most of the receive cost).

Handlers are plain callables ``handler(sender, address, *args)``, listed in one ``ROUTES`` table built
from :mod:`fxmix.host_bridge.addresses`; they validate, assemble blocks and enqueue, and can be called without a socket
(:meth:`BridgeCore.handle_datagram` takes raw bytes). Everything that touches an engine ``Session``
runs on the worker thread, in arrival order, so a session is never used from two threads; a session's
assembler is used by the receive thread and (for the reorder timeout) the worker, under one lock.

If the engine is slower than the block rate, blocks that waited more than ``max_backlog_s`` are not mixed
(counted as ``overload``) until the worker has caught up, so latency stays bounded instead of growing.

Bad input never crashes the server: each kind of problem (malformed packet, unknown address, wrong
types, wrong blob size, unknown session, late/duplicate/missing blocks, full queue, ...) is counted and
logged as one clear line, at most once per ``log_interval_s`` per kind (:class:`ErrorLog`).

streaming-safe: yes (the bridge adds no latency of its own beyond the reorder wait for missing blocks;
the mix carries the engine's ``latency_samples``).
"""

from __future__ import annotations

import gc
import ipaddress
import json
import logging
import math
import queue
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pythonosc import osc_bundle, osc_message, osc_packet, osc_server
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder

from ..dsp.errors import ConfigError, FxmixError
from . import addresses as A

log = logging.getLogger("fxmix.bridge")

Address = tuple[str, int]
#: ``factory(sample_rate, block_samples, n_tracks, profile) -> Session``
SessionFactory = Callable[[int, int, int, str | None], Any]
Handler = Callable[..., None]

#: Human label of each counted problem kind (the log line starts with it).
ERROR_KINDS: dict[str, str] = {
    "not_osc": "datagram is not OSC (no '/' address or '#bundle' header)",
    "parse": "malformed or truncated OSC packet",
    "unknown_address": "unknown OSC address",
    "bad_types": "wrong OSC argument types",
    "bad_value": "argument out of range",
    "unknown_session": "message for a session that is not open",
    "blob_size": "wrong audio blob size",
    "non_finite": "NaN/inf samples in a block (block zeroed)",
    "late": "late block, its sequence number was already released for mixing (dropped)",
    "duplicate": "duplicate block (dropped)",
    "missing": "missing track block (zero-filled)",
    "seq_jump": "sequence number jumped too far ahead (stream resynchronised)",
    "queue_full": "processing queue full, message dropped (server overloaded or flooded)",
    "denied": "sender not in the allowlist (--allow)",
    "engine": "engine rejected a request",
    "send": "could not send a reply",
    "recv": "could not read from the socket",
    "overload": "server behind real time, block skipped (engine slower than the block rate)",
}

#: After falling behind real time, the worker skips the engine until queued blocks are this fresh again (s).
CATCH_UP_S = 0.02

#: Why an open, close or reset the worker could not be given is refused (all or nothing; the sender retries).
BUSY = "server busy (queue full); send it again"

#: Most ``/fxmix/error`` replies per second (token bucket), so bad requests cannot be amplified.
ERROR_REPLIES_PER_S = 20.0

_PARSE_ERRORS = (
    osc_packet.ParseError,
    osc_message.ParseError,
    osc_bundle.ParseError,
    ValueError,
    IndexError,
    TypeError,
    struct.error,
    UnicodeDecodeError,
    RecursionError,
    OverflowError,
)


class _PythonOscParseNoise(logging.Filter):
    """Drops python-osc's unthrottled root-logger line for unknown type tags (``Unhandled parameter type``):
    such a message then fails our type check and is counted and logged rate-limited as ``bad_types``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.module == "osc_message" and record.getMessage().startswith("Unhandled parameter type")
        )


def _install_python_osc_filter() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _PythonOscParseNoise) for f in root.filters):
        root.addFilter(_PythonOscParseNoise())


class ErrorLog:
    """Counts problems by kind and logs them rate-limited.

    The first occurrence of a kind is logged at once (one line, with the detail); after that at most one
    line per kind per ``interval_s``, saying how many more happened. Thread-safe.

    Args:
        interval_s: minimum seconds between two lines of the same kind.
        logger: where lines go.
    """

    def __init__(self, interval_s: float = 5.0, logger: logging.Logger = log) -> None:
        self.interval_s = float(interval_s)
        self.logger = logger
        self.counts: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._last_t: dict[str, float] = {}
        self._lock = threading.Lock()

    def report(self, kind: str, detail: str) -> bool:
        """Count one problem of ``kind``; return True if a line was logged for it."""
        now = time.monotonic()
        with self._lock:
            self.counts[kind] += 1
            last = self._last_t.get(kind)
            if last is not None and now - last < self.interval_s:
                self._unlogged[kind] += 1
                return False
            more = self._unlogged.pop(kind, 0)
            self._last_t[kind] = now
            total = self.counts[kind]
        label = ERROR_KINDS.get(kind, kind)
        detail = detail if len(detail) <= 300 else detail[:300] + "..."  # hostile input stays one short line
        extra = f"; {more} more since the last line" if more else ""
        self.logger.warning("bridge: %s: %s (%d in all%s)", label, detail, total, extra)
        return True

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


# ---------------------------------------------------------------- block assembly (pure, no threads)


@dataclass
class _Pending:
    blocks: np.ndarray  # (n_tracks, 2, block_samples) float32
    got: np.ndarray  # (n_tracks,) bool
    t_first: float


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
    repeated (seq, track) pairs (duplicates). A jump of more than ``max_gap_blocks`` resynchronises.

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
            missing = int(self.n_tracks - p.got.sum())
            blocks = p.blocks
        if missing:
            self.stats.zero_filled += missing
            self.events.append(("missing", f"block {seq}: {missing} of {self.n_tracks} tracks zero-filled"))
        self.stats.mixed_blocks += 1
        self.next_seq = seq + 1
        return seq, blocks

    def _drain(self) -> list[tuple[int, np.ndarray]]:
        out = []
        while True:
            p = self._pending.get(self.next_seq)
            if p is not None and p.got.all():
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
        if seq < self.next_seq:
            self.stats.late += 1
            self.events.append(
                ("late", f"block {seq} track {track} arrived after block {self.next_seq - 1} was mixed")
            )
            return []
        if seq - self.next_seq > self.max_gap_blocks:
            self.stats.seq_jumps += 1
            self.events.append(("seq_jump", f"block {seq} while expecting {self.next_seq}; restarting there"))
            self._pending.clear()
            self.next_seq = seq
            self.max_seen = seq - 1
        p = self._pending.get(seq)
        if p is None:
            p = _Pending(
                np.zeros((self.n_tracks, 2, self.block_samples), np.float32),
                np.zeros(self.n_tracks, bool),
                now,
            )
            self._pending[seq] = p
        elif p.got[track]:
            self.stats.duplicates += 1
            self.events.append(("duplicate", f"block {seq} track {track} received twice"))
            return []
        p.blocks[track] = audio
        p.got[track] = True
        if seq < self.max_seen:
            self.stats.reordered += 1
        self.max_seen = max(self.max_seen, seq)
        return self._drain()

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


# ---------------------------------------------------------------- OSC encode/decode helpers


def build_message(address: str, args: Sequence[Any], types: str | None = None) -> bytes:
    """Encode one OSC message. ``types`` (e.g. ``"iib"``) fixes the tags; None lets python-osc infer them."""
    b = OscMessageBuilder(address=address)
    for i, value in enumerate(args):
        tag = types[i] if types else None
        b.add_arg(value, tag) if tag else b.add_arg(value)
    return b.build().dgram


def encode_block(audio: np.ndarray) -> bytes:
    """(2, block_samples) float -> float32 LE channel-major blob bytes."""
    return np.ascontiguousarray(audio, dtype=A.BLOB_DTYPE).tobytes()


def decode_block(blob: bytes, block_samples: int) -> np.ndarray:
    """Blob bytes -> (2, block_samples) float32 (a copy). The caller checks the size first."""
    return np.frombuffer(blob, dtype=A.BLOB_DTYPE).reshape(2, block_samples).astype(np.float32)


def parse_messages(data: bytes) -> list[osc_message.OscMessage]:
    """All messages of a datagram (bundles flattened, timetags ignored). Raises python-osc's ParseError
    (or one of the low-level errors listed in ``_PARSE_ERRORS``) on malformed input."""
    return [tm.message for tm in osc_packet.OscPacket(data).messages]


def check_types(types: str, args: Sequence[Any]) -> list[Any] | None:
    """Return ``args`` converted to the route's types, or None when they do not match.

    ``i`` needs an int (not a bool), ``f`` an int or float (converted to float), ``s`` a str, ``b`` bytes.
    """
    if len(args) != len(types):
        return None
    out: list[Any] = []
    for tag, value in zip(types, args):
        if tag == "i" and isinstance(value, int) and not isinstance(value, bool):
            out.append(int(value))
        elif tag == "f" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
        elif tag == "s" and isinstance(value, str):
            out.append(value)
        elif tag == "b" and isinstance(value, (bytes, bytearray)):
            out.append(bytes(value))
        else:
            return None
    return out


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", bytes: "blob"}.get(
        type(value), type(value).__name__
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def to_json(obj: Any) -> str:
    """Compact JSON of engine dicts (numpy values converted; non-finite floats become null)."""
    text = json.dumps(obj, default=_json_default, separators=(",", ":"), allow_nan=True)
    return text.replace("NaN", "null").replace("-Infinity", "null").replace("Infinity", "null")


# ---------------------------------------------------------------- the protocol core


@dataclass(frozen=True)
class SlotConfig:
    """What the receive thread knows about an open session (to validate blocks without the engine)."""

    sample_rate: int
    block_samples: int
    n_tracks: int
    #: the session's block assembler (receive side; one per opening, shared with the worker's ``_Live``)
    assembler: BlockAssembler = field(compare=False, repr=False)


@dataclass
class _Live:
    """Worker-side state of one session."""

    config: SlotConfig
    session: Any
    reply_to: Address
    profile: str | None
    tracks: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)
    controls: dict[str, float] = field(default_factory=dict)
    last_params_t: float = 0.0
    process_s_total: float = 0.0
    process_s_max: float = 0.0
    skipped_blocks: int = 0
    mixed: int = 0  # blocks the engine mixed


class BridgeCore:
    """Transport-independent OSC protocol: routes, validation, queue, worker, sessions.

    Args:
        send: ``send(datagram, (host, port))``; the UDP server passes its socket's ``sendto``.
        session_factory: builds an engine session, ``factory(sample_rate, block_samples, n_tracks, profile)``.
        default_profile: profile of new sessions (None: the factory's default).
        reply_to: fixed reply address for every session (None: the sender of ``/fxmix/open``).
        reaper_feedback: send ``/track/@/volume/db`` and ``/track/@/pan`` here (None: off).
        reaper_track_offset: Reaper track number of fxmix track 0 (Reaper counts from 1).
        window_blocks: reorder window of the block assembler (blocks).
        reorder_timeout_s: release an incomplete block (zero-filled) when its first track arrived this long
            ago; None waits for the window or ``/fxmix/flush`` only (deterministic, for tests).
        params_interval_s: push ``/fxmix/params`` (and Reaper feedback) this often per session; None: only
            on query.
        queue_size: most messages (complete blocks, controls, queries) waiting for the worker; beyond that
            they are dropped and counted.
        max_queued_bytes: most audio waiting for the worker (bytes of complete blocks); beyond that blocks
            are dropped and counted, so memory stays bounded whatever the session's size.
        max_backlog_s: when a block waited longer than this in the queue the server is behind real time: it
            skips the engine (no mix for those blocks, counted as ``overload``) until blocks are again
            fresher than :data:`CATCH_UP_S`, so latency stays bounded; None never skips (deterministic, for tests).
        log_interval_s: per-kind rate limit of problem log lines.
    """

    def __init__(
        self,
        send: Callable[[bytes, Address], None],
        session_factory: SessionFactory,
        *,
        default_profile: str | None = None,
        reply_to: Address | None = None,
        reaper_feedback: Address | None = None,
        reaper_track_offset: int = 1,
        window_blocks: int = 8,
        reorder_timeout_s: float | None = 0.05,
        params_interval_s: float | None = 0.5,
        queue_size: int = 8192,
        max_queued_bytes: int = 64 << 20,
        max_backlog_s: float | None = 0.2,
        log_interval_s: float = 5.0,
    ) -> None:
        self._send_raw = send
        self.session_factory = session_factory
        self.default_profile = default_profile
        self.reply_to = reply_to
        self.reaper_feedback = reaper_feedback
        self.reaper_track_offset = int(reaper_track_offset)
        self.window_blocks = int(window_blocks)
        self.reorder_timeout_s = reorder_timeout_s
        self.params_interval_s = params_interval_s
        self.max_backlog_s = max_backlog_s
        self._behind = False
        self.errors = ErrorLog(log_interval_s)
        self.counters: Counter[str] = Counter()
        self._queue: queue.Queue = queue.Queue(maxsize=int(queue_size))
        self.max_queued_bytes = int(max_queued_bytes)
        self._queued_bytes = 0
        self._slots: dict[int, SlotConfig] = {}
        self._slots_lock = threading.Lock()
        self._live: dict[int, _Live] = {}
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._error_tokens, self._error_t = float(ERROR_REPLIES_PER_S), time.monotonic()
        _install_python_osc_filter()
        #: ROUTES: OSC address -> plain handler ``handler(sender, address, *args)`` (STYLE rule 12).
        self.ROUTES: dict[str, Handler] = {addr: getattr(self, r.handler) for addr, r in A.INBOUND.items()}

    # ------------------------------------------------------------ receive path (socket thread)

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        """Parse, validate and route one datagram. Never raises on bad input; never blocks."""
        self.counters["datagrams"] += 1
        if not (osc_message.OscMessage.dgram_is_message(data) or osc_bundle.OscBundle.dgram_is_bundle(data)):
            self.errors.report("not_osc", f"{len(data)} bytes from {sender[0]}:{sender[1]}")
            return
        try:
            messages = parse_messages(data)
        except _PARSE_ERRORS as exc:
            self.errors.report("parse", f"{len(data)} bytes from {sender[0]}:{sender[1]}: {exc}")
            return
        for msg in messages:
            self.handle_message(msg.address, list(msg.params), sender)

    def handle_message(self, address: str, args: Sequence[Any], sender: Address) -> None:
        """Route one decoded message (type-checked against :data:`addresses.INBOUND`)."""
        self.counters["messages"] += 1
        handler = self.ROUTES.get(address)
        if handler is None:
            self.errors.report("unknown_address", f"{address!r} from {sender[0]}:{sender[1]}")
            return
        route = A.INBOUND[address]
        checked = check_types(route.types, args)
        if checked is None:
            got = ",".join(_type_name(a) for a in args) or "none"
            want = ",".join(f"{n}:{t}" for n, t in zip(route.args, route.types))
            self.errors.report(
                "bad_types", f"{address} wants ({want}), got ({got}) from {sender[0]}:{sender[1]}"
            )
            return
        handler(sender, address, *checked)

    def _enqueue(self, item: tuple) -> None:
        with self._slots_lock:
            ok = self._put(item)
        if not ok:
            self.errors.report("queue_full", f"{self._queue.qsize()} messages waiting; dropped {item[0]}")

    def _put(self, item: tuple) -> bool:
        """Queue ``item`` for the worker (caller holds ``_slots_lock``, so the queue's order is the order of
        the assembler's and the slots' changes); False when the queue, or its audio budget, is full."""
        size = item[5].nbytes if item[0] == "mix" else 0
        if size and self._queued_bytes + size > self.max_queued_bytes:
            return False
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        self._queued_bytes += size
        return True

    def _release(self, sender: Address, session: int, slot: SlotConfig, release, t: float) -> None:
        """Run ``release(assembler)`` and queue the complete blocks it returns, in one step under the lock (a
        stale release on the worker cannot interleave with the receive thread's); report after."""
        with self._slots_lock:
            if self._slots.get(session) is not slot:  # closed or re-opened meanwhile: nothing to release
                return
            ready = release(slot.assembler)
            events, slot.assembler.events = slot.assembler.events, []
            dropped = [
                seq for seq, blocks in ready if not self._put(("mix", sender, session, slot, seq, blocks, t))
            ]
        for kind, detail in events:
            self.errors.report(kind, f"session {session} {detail}")
        if dropped:
            self.errors.report(
                "queue_full",
                f"session {session}: {self._queue.qsize()} messages / {self._queued_bytes >> 20} MiB of audio "
                f"waiting; dropped block(s) {dropped[0]}..{dropped[-1]}",
            )

    def _slot(self, session: int, address: str, sender: Address) -> SlotConfig | None:
        slot = self._slots.get(session)
        if slot is None:
            self.errors.report(
                "unknown_session", f"{address} for session {session} from {sender[0]}:{sender[1]}"
            )
        return slot

    def on_open(
        self, sender: Address, address: str, session: int, sample_rate: int, block_samples: int, n_tracks: int
    ) -> None:
        problems = []
        if not A.MIN_SAMPLE_RATE <= sample_rate <= A.MAX_SAMPLE_RATE:
            problems.append(f"sample_rate {sample_rate} not in [{A.MIN_SAMPLE_RATE}, {A.MAX_SAMPLE_RATE}]")
        if not A.MIN_BLOCK_SAMPLES <= block_samples <= A.MAX_BLOCK_SAMPLES:
            problems.append(
                f"block_samples {block_samples} not in [{A.MIN_BLOCK_SAMPLES}, {A.MAX_BLOCK_SAMPLES}]"
            )
        if not 1 <= n_tracks <= A.MAX_TRACKS:
            problems.append(f"n_tracks {n_tracks} not in [1, {A.MAX_TRACKS}]")
        with self._slots_lock:
            if session not in self._slots and len(self._slots) >= A.MAX_SESSIONS:
                problems.append(f"{A.MAX_SESSIONS} sessions already open; close one first")
            if not problems and 2 * n_tracks * block_samples * 4 > self.max_queued_bytes:
                problems.append(
                    f"a block of {n_tracks} tracks x {block_samples} samples exceeds the server's queue"
                )
            if not problems:
                # all or nothing: the slot exists only if the worker will open the engine for it
                asm = BlockAssembler(n_tracks, block_samples, self.window_blocks)
                slot = SlotConfig(sample_rate, block_samples, n_tracks, asm)
                if self._put(("open", sender, session, slot)):
                    self._slots[session] = slot
                else:
                    problems.append(BUSY)
        if problems:
            self._reject(sender, session, f"{address}: " + "; ".join(problems))

    def on_close(self, sender: Address, address: str, session: int) -> None:
        with self._slots_lock:
            found = self._slots.get(session)
            queued = found is not None and self._put(("close", sender, session))
            if queued:  # all or nothing: a close the worker will not see leaves the session open
                del self._slots[session]
        if found is None:
            self.errors.report(
                "unknown_session", f"{address} for session {session} from {sender[0]}:{sender[1]}"
            )
        elif not queued:
            self._reject(sender, session, f"{address}: {BUSY}")

    def on_track(
        self, sender: Address, address: str, session: int, track: int, class_name: str, name: str
    ) -> None:
        slot = self._slot(session, address, sender)
        if slot is None:
            return
        if not 0 <= track < slot.n_tracks:
            self._reject(sender, session, f"{address}: track {track} not in [0, {slot.n_tracks - 1}]")
            return
        self._enqueue(("track", sender, session, track, class_name or None, name or None))

    def on_block(
        self, sender: Address, address: str, session: int, track: int, seq: int, audio: bytes
    ) -> None:
        slot = self._slots.get(session)
        if slot is None:
            self.errors.report(
                "unknown_session", f"{address} for session {session} from {sender[0]}:{sender[1]}"
            )
            return
        if not 0 <= track < slot.n_tracks or seq < 0:
            self.errors.report(
                "bad_value", f"{address}: track {track}, seq {seq} (session has {slot.n_tracks} tracks)"
            )
            return
        want = 2 * slot.block_samples * 4
        if len(audio) != want:
            self.errors.report(
                "blob_size",
                f"session {session} track {track} seq {seq}: {len(audio)} bytes, expected {want} "
                f"(2 x {slot.block_samples} float32)",
            )
            return
        block = decode_block(audio, slot.block_samples)
        if not np.isfinite(block).all():
            self.errors.report("non_finite", f"session {session} track {track} seq {seq}")
            block = np.zeros_like(block)
        now = time.monotonic()
        self._release(sender, session, slot, lambda asm: asm.push(seq, track, block, now), now)

    def on_flush(self, sender: Address, address: str, session: int) -> None:
        slot = self._slot(session, address, sender)
        if slot is not None:
            self._release(sender, session, slot, BlockAssembler.flush, time.monotonic())

    def on_control(self, sender: Address, address: str, session: int, name: str, value: float) -> None:
        if self._slot(session, address, sender) is None:
            return
        if not math.isfinite(value):
            self._reject(sender, session, f"{address}: {name} = {value} is not finite")
            return
        self._enqueue(("control", sender, session, name, value))

    def on_profile(self, sender: Address, address: str, session: int, profile: str) -> None:
        if self._slot(session, address, sender) is not None:
            self._enqueue(("profile", sender, session, profile))

    def on_reset(self, sender: Address, address: str, session: int) -> None:
        slot = self._slot(session, address, sender)
        if slot is None:
            return
        with self._slots_lock:  # blocks assembled before the reset are queued ahead of it, later ones after
            queued = self._put(("reset", sender, session))
            if queued:  # all or nothing: engine and assembler reset together
                slot.assembler.reset()
        if not queued:
            self._reject(sender, session, f"{address}: {BUSY}")

    def on_reply(self, sender: Address, address: str, session: int, host: str, port: int) -> None:
        if self._slot(session, address, sender) is None:
            return
        try:
            ipaddress.ip_address(host)
        except ValueError:
            self._reject(sender, session, f"{address}: host {host!r} is not an IP address")
            return
        if not 1 <= port <= 65535:
            self._reject(sender, session, f"{address}: port {port} not in [1, 65535]")
            return
        self._enqueue(("reply", sender, session, (host, port)))

    def on_query_latency(self, sender: Address, address: str, session: int) -> None:
        if self._slot(session, address, sender) is not None:
            self._enqueue(("query_latency", sender, session))

    def on_query_state(self, sender: Address, address: str, session: int) -> None:
        if self._slot(session, address, sender) is not None:
            self._enqueue(("query_state", sender, session))

    def on_query_stats(self, sender: Address, address: str, session: int) -> None:
        if session == -1 or self._slot(session, address, sender) is not None:
            self._enqueue(("query_stats", sender, session))

    def on_query_params(self, sender: Address, address: str, session: int) -> None:
        if self._slot(session, address, sender) is not None:
            self._enqueue(("query_params", sender, session))

    def on_ping(self, sender: Address, address: str, token: int) -> None:
        self.send("/fxmix/pong", [token], sender)  # no session state: answered on the receive thread

    def _reject(self, sender: Address, session: int, message: str) -> None:
        self.errors.report("bad_value", message)
        self._send_error(sender, session, message)

    def _send_error(self, sender: Address, session: int, message: str) -> None:
        """Reply ``/fxmix/error``; at most ``ERROR_REPLIES_PER_S`` per second (no amplification under floods)."""
        now = time.monotonic()
        with self._slots_lock:
            self._error_tokens = min(
                ERROR_REPLIES_PER_S, self._error_tokens + (now - self._error_t) * ERROR_REPLIES_PER_S
            )
            self._error_t = now
            if self._error_tokens < 1.0:
                return
            self._error_tokens -= 1.0
        self.send("/fxmix/error", [session, message[:1000]], sender)

    # ------------------------------------------------------------ sending

    def send(self, address: str, args: Sequence[Any], to: Address) -> None:
        route = A.OUTBOUND.get(address)
        try:
            self._send_raw(build_message(address, args, route.types if route else None), to)
        except OSError as exc:
            self.errors.report("send", f"{address} to {to[0]}:{to[1]}: {exc}")

    # ------------------------------------------------------------ worker thread

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._worker is None:
            self._stop.clear()
            self._worker = threading.Thread(target=self._run, name="fxmix-bridge-worker", daemon=True)
            self._worker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker thread (pending messages are dropped) and close every session."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout_s)
            self._worker = None
        with self._slots_lock:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queued_bytes = 0
        for lv in self._live.values():
            self._close_engine(lv.session)
        self._live.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=self._wait_s())
            except queue.Empty:
                item = None
            if item is not None and item[0] == "mix":
                with self._slots_lock:
                    self._queued_bytes -= item[5].nbytes
            try:
                if item is not None:
                    self.process_item(item)
                self._flush_stale()
            except Exception as exc:  # noqa: BLE001 - top-level guard: the worker must never die
                # Typed engine errors are handled per request; anything else is logged and counted here.
                what = item[0] if item is not None else "timer"
                self.errors.report("engine", f"{what}: {type(exc).__name__}: {exc}")

    def _wait_s(self) -> float:
        if self.reorder_timeout_s is None:
            return 0.1
        with self._slots_lock:
            oldest = min(
                (t for slot in self._slots.values() if (t := slot.assembler.oldest_pending_t) is not None),
                default=None,
            )
        if oldest is None:
            return 0.1
        return max(0.0005, min(0.1, oldest + self.reorder_timeout_s - time.monotonic()))

    def _flush_stale(self) -> None:
        """Release blocks whose tracks stopped coming (reorder timeout); worker thread."""
        if self.reorder_timeout_s is None:
            return
        now = time.monotonic()
        with self._slots_lock:
            stale = [
                (sid, slot)
                for sid, slot in self._slots.items()
                if slot.assembler.oldest_pending_t is not None
            ]
        for sid, slot in stale:  # (_release skips a slot closed or re-opened since)
            self._release(
                ("0.0.0.0", 0), sid, slot, lambda asm: asm.flush_stale(now, self.reorder_timeout_s), now
            )

    def process_item(self, item: tuple) -> None:
        """Run one queued request (worker thread; tests may call it directly)."""
        try:
            kind, sender, session, *rest = item
            getattr(self, "_w_" + kind)(sender, session, *rest)
        finally:
            if self._worker is not None and threading.current_thread() is self._worker:
                self._queue.task_done()

    @staticmethod
    def _close_engine(engine: Any) -> None:
        close = getattr(engine, "close", None)  # frees the engine's planning thread
        if close is not None:
            close()

    def _get_live(self, session: int, what: str, sender: Address) -> _Live | None:
        lv = self._live.get(session)
        if lv is None:
            self.errors.report(
                "unknown_session", f"{what} for session {session} (not open or failed to open)"
            )
        return lv

    def _make_session(self, cfg: SlotConfig, profile: str | None) -> Any:
        return self.session_factory(cfg.sample_rate, cfg.block_samples, cfg.n_tracks, profile)

    def _w_open(self, sender: Address, session: int, cfg: SlotConfig) -> None:
        try:
            engine = self._make_session(cfg, self.default_profile)
        except (FxmixError, ValueError) as exc:
            with self._slots_lock:
                if self._slots.get(session) is cfg:
                    del self._slots[session]
            previous = self._live.pop(session, None)
            if previous is not None:
                self._close_engine(previous.session)
            self._engine_error(sender, session, f"open failed: {exc}")
            return
        # move everything alive now (engine, network, libraries) out of the collector's generations: a full
        # collection over them costs ~0.1 s, which would land inside some later block's processing
        gc.collect()
        gc.freeze()
        reply_to = self.reply_to or sender
        previous = self._live.get(session)
        if previous is not None:
            self._close_engine(previous.session)
        self._live[session] = _Live(
            cfg,
            engine,
            reply_to,
            self.default_profile,
        )
        log.info(
            "bridge: session %d open: %d Hz, %d-sample blocks, %d tracks, latency %d samples; replies to %s:%d",
            session, cfg.sample_rate, cfg.block_samples, cfg.n_tracks, int(engine.latency_samples), *reply_to,
        )  # fmt: skip
        self.send(
            "/fxmix/opened", [session, int(engine.latency_samples), cfg.block_samples, cfg.n_tracks], reply_to
        )

    def _w_close(self, sender: Address, session: int) -> None:
        lv = self._live.pop(session, None)
        if lv is not None:
            self._close_engine(lv.session)
            log.info("bridge: session %d closed", session)

    def _w_track(
        self, sender: Address, session: int, track: int, class_name: str | None, name: str | None
    ) -> None:
        lv = self._get_live(session, "/fxmix/track", sender)
        if lv is None:
            return
        try:
            lv.session.set_track(track, class_name=class_name, name=name)
        except (FxmixError, ValueError, KeyError) as exc:
            self._engine_error(sender, session, f"/fxmix/track {track} {class_name!r}: {exc}")
            return
        old_class, old_name = lv.tracks.get(track, (None, None))
        lv.tracks[track] = (class_name or old_class, name or old_name)

    def _w_mix(
        self, sender: Address, session: int, slot: SlotConfig, seq: int, blocks: np.ndarray, t_ready: float
    ) -> None:
        """Mix one complete multitrack block (queued by the receive thread when its last track came in)."""
        if self.max_backlog_s is not None:  # hysteresis: once behind, skip until (nearly) caught up
            age_s = time.monotonic() - t_ready
            self._behind = age_s > (
                min(CATCH_UP_S, self.max_backlog_s) if self._behind else self.max_backlog_s
            )
        lv = self._live.get(session)
        if lv is None:
            self.errors.report(
                "unknown_session", f"/fxmix/block for session {session} (closed or failed to open)"
            )
            return
        if lv.config is not slot:
            return  # assembled for an earlier opening of this session number
        if self._behind:  # shed load: skip the engine until the queue is back under max_backlog_s
            lv.skipped_blocks += 1
            self.errors.report("overload", f"session {session} block {seq} not mixed")
            return
        t0 = time.perf_counter()
        start_later = hasattr(lv.session, "start_background")
        try:
            # the engine's between-blocks work starts once the mix is sent, not while it is being sent
            mix = (
                lv.session.process(blocks, start_background=False)
                if start_later
                else lv.session.process(blocks)
            )
            dt = time.perf_counter() - t0
            lv.process_s_total += dt
            lv.process_s_max = max(lv.process_s_max, dt)
            lv.mixed += 1
            self.send("/fxmix/mix", [session, seq, encode_block(mix)], lv.reply_to)
        finally:
            if start_later:
                lv.session.start_background()
        if (
            self.params_interval_s is not None
            and (now := time.monotonic()) - lv.last_params_t >= self.params_interval_s
        ):
            if lv.mixed:
                lv.last_params_t = now
                defer = getattr(lv.session, "defer", None)
                if defer is not None:  # on the engine's between-blocks thread, not this one
                    defer(self._push_params, session, lv)
                else:
                    self._push_params(session, lv)

    def _w_control(self, sender: Address, session: int, name: str, value: float) -> None:
        lv = self._get_live(session, "/fxmix/control", sender)
        if lv is None:
            return
        try:
            lv.session.set_control(name, value)
        except (FxmixError, ValueError, KeyError) as exc:
            self._engine_error(sender, session, f"/fxmix/control {name!r} = {value}: {exc}")
            return
        if name != "reset":
            lv.controls[name] = value

    def _w_profile(self, sender: Address, session: int, profile: str) -> None:
        lv = self._get_live(session, "/fxmix/profile", sender)
        if lv is None:
            return
        try:
            engine = self._make_session(lv.config, profile)
            for track, (class_name, name) in sorted(lv.tracks.items()):
                engine.set_track(track, class_name=class_name, name=name)
            for name, value in lv.controls.items():
                engine.set_control(name, value)
        except (FxmixError, ValueError, KeyError) as exc:
            self._engine_error(sender, session, f"/fxmix/profile {profile!r}: {exc}")
            return
        self._close_engine(lv.session)
        lv.session, lv.profile = engine, profile
        log.info("bridge: session %d now uses profile %s", session, profile)
        self.send("/fxmix/latency", [session, int(engine.latency_samples)], lv.reply_to)

    def _w_reset(self, sender: Address, session: int) -> None:
        lv = self._get_live(session, "/fxmix/reset", sender)
        if lv is not None:
            lv.session.set_control("reset", 1.0)  # clears tails and running statistics, keeps tracks

    def _w_reply(self, sender: Address, session: int, to: Address) -> None:
        lv = self._get_live(session, "/fxmix/reply", sender)
        if lv is not None:
            lv.reply_to = to

    def _w_query_latency(self, sender: Address, session: int) -> None:
        lv = self._get_live(session, "/fxmix/query/latency", sender)
        if lv is not None:
            self.send("/fxmix/latency", [session, int(lv.session.latency_samples)], sender)

    def _w_query_state(self, sender: Address, session: int) -> None:
        lv = self._get_live(session, "/fxmix/query/state", sender)
        if lv is None:
            return
        state = {
            "session": session,
            "sample_rate": lv.config.sample_rate,
            "block_samples": lv.config.block_samples,
            "n_tracks": lv.config.n_tracks,
            "latency_samples": int(lv.session.latency_samples),
            "profile": lv.profile,
            "tracks": {str(t): {"class_name": c, "name": n} for t, (c, n) in sorted(lv.tracks.items())},
            "controls": lv.controls,
            "next_seq": lv.config.assembler.next_seq,
            "reply_to": f"{lv.reply_to[0]}:{lv.reply_to[1]}",
        }
        self.send("/fxmix/state", [session, to_json(state)], sender)

    def stats(self, session: int = -1) -> dict[str, Any]:
        """Server counters, and the session's block and engine statistics when ``session`` >= 0."""
        out: dict[str, Any] = {
            "server": {
                **dict(self.counters),
                "queue_depth": self._queue.qsize(),
                "sessions": sorted(self._live),
            },
            "errors": self.errors.snapshot(),
        }
        lv = self._live.get(session)
        if lv is not None:
            st = lv.config.assembler.stats
            out["session"] = {
                **st.__dict__,
                "process_ms_mean": 1000.0 * lv.process_s_total / max(1, lv.mixed),
                "engine_mixed_blocks": lv.mixed,
                "process_ms_max": 1000.0 * lv.process_s_max,
                "skipped_blocks": lv.skipped_blocks,
                "engine": lv.session.stats(),
            }
        return out

    def _w_query_stats(self, sender: Address, session: int) -> None:
        if session != -1 and self._get_live(session, "/fxmix/query/stats", sender) is None:
            return
        self.send("/fxmix/stats", [session, to_json(self.stats(session))], sender)

    def _w_query_params(self, sender: Address, session: int) -> None:
        lv = self._get_live(session, "/fxmix/query/params", sender)
        if lv is not None:
            self._push_params(session, lv, to=sender)

    def _push_params(self, session: int, lv: _Live, to: Address | None = None) -> None:
        if hasattr(lv.session, "all_track_params"):
            every = lv.session.all_track_params()
        else:
            every = [lv.session.track_params(t) for t in range(lv.config.n_tracks)]
        for track, params in enumerate(every):
            self.send("/fxmix/params", [session, track, to_json(params)], to or lv.reply_to)
            if self.reaper_feedback is not None:
                self._send_reaper(track, params)

    def _send_reaper(self, track: int, params: dict) -> None:
        number = track + self.reaper_track_offset
        gain_db, pan = params.get("gain_db"), params.get("pan")
        if isinstance(gain_db, (int, float)) and math.isfinite(gain_db):
            self.send(A.reaper_address("/track/@/volume/db", number), [float(gain_db)], self.reaper_feedback)
        if isinstance(pan, (int, float)) and math.isfinite(pan):
            pan_norm = min(1.0, max(0.0, 0.5 * (float(pan) + 1.0)))
            self.send(A.reaper_address("/track/@/pan", number), [pan_norm], self.reaper_feedback)

    def _engine_error(self, sender: Address, session: int, message: str) -> None:
        self.errors.report("engine", f"session {session} {message}")
        self._send_error(sender, session, message)


# ---------------------------------------------------------------- UDP transport (python-osc's server)


def parse_allowlist(items: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``["127.0.0.1", "192.168.1.0/24"]`` -> networks. Raises ConfigError naming the bad entry."""
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"--allow {item!r}: not an IP address or network ({exc}); e.g. 192.168.1.20"
            ) from exc
    return nets


class _OSCServer(osc_server.OSCUDPServer):
    """python-osc's UDP server, used for its socket set-up and the allowlist (``verify_request``).

    Datagrams are read by :meth:`BridgeServer._receive_loop` and handed to :meth:`BridgeCore.handle_datagram`
    (python-osc's dispatcher swallows ParseError silently and may sleep on timetags; we do neither).
    Datagrams up to 64 KiB are read whole."""

    max_packet_size = 65535
    allow_reuse_address = False

    def __init__(self, address: Address, core: BridgeCore, allow: Sequence, rcvbuf_bytes: int) -> None:
        self.core = core
        self.allow = list(allow)
        self.rcvbuf_bytes = int(rcvbuf_bytes)
        super().__init__(address, Dispatcher())

    def server_bind(self) -> None:
        for opt, size in ((socket.SO_RCVBUF, self.rcvbuf_bytes), (socket.SO_SNDBUF, self.rcvbuf_bytes // 2)):
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError as exc:
                log.warning("bridge: cannot set socket buffer to %d bytes: %s", size, exc)
        super().server_bind()

    def verify_request(self, request, client_address) -> bool:
        if not self.allow:
            return True
        try:
            ip = ipaddress.ip_address(client_address[0])
        except ValueError:
            ip = None
        if ip is not None and any(ip in net for net in self.allow):
            return True
        self.core.errors.report("denied", f"{client_address[0]}:{client_address[1]}")
        return False

    def handle_error(self, request, client_address) -> None:  # last resort: log, keep serving
        log.exception("bridge: unexpected error handling a datagram from %s", client_address)


class BridgeServer:
    """UDP OSC server around a :class:`BridgeCore`; use as a context manager or ``start()``/``stop()``.

    Args:
        session_factory: see :class:`BridgeCore`.
        host: interface to bind (default loopback only).
        port: UDP port (0: an ephemeral one, see :attr:`address`).
        allow: sender IPs/networks accepted (empty: everyone who can reach the socket).
        rcvbuf_bytes: SO_RCVBUF request (the kernel may cap it; see ``net.core.rmem_max``).
        **core_kwargs: passed to :class:`BridgeCore`.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        host: str = "127.0.0.1",
        port: int = A.DEFAULT_PORT,
        *,
        allow: Sequence[str] = (),
        rcvbuf_bytes: int = 4 * 1024 * 1024,
        **core_kwargs: Any,
    ) -> None:
        self.core = BridgeCore(self._sendto, session_factory, **core_kwargs)
        try:
            self._server = _OSCServer((host, int(port)), self.core, parse_allowlist(allow), rcvbuf_bytes)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc}); pick another --port or --host"
            ) from exc
        self._thread: threading.Thread | None = None
        self._running = threading.Event()

    def _sendto(self, data: bytes, to: Address) -> None:
        self._server.socket.sendto(data, to)

    @property
    def address(self) -> Address:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def _receive_loop(self, poll_s: float = 0.05) -> None:
        """Read datagrams until :meth:`stop` and hand each straight to the core.

        (socketserver's ``serve_forever`` adds a selector round and a handful of Python calls per datagram;
        at 16 datagrams per block that was a measurable part of the round trip. The socket's timeout, which
        lets the loop see :meth:`stop`, makes CPython ``poll`` before each ``recvfrom``.)
        """
        sock, srv, core = self._server.socket, self._server, self.core
        sock.settimeout(poll_s)
        size = srv.max_packet_size
        while self._running.is_set():
            try:
                data, sender = sock.recvfrom(size)
            except TimeoutError:
                continue
            except (ConnectionRefusedError, ConnectionResetError):  # ICMP "port unreachable" for an earlier
                # reply (Linux: ECONNREFUSED, Windows: WSAECONNRESET): the peer has gone
                core.errors.report("send", "a reply's destination port is closed (client gone?)")
                continue
            except OSError as exc:
                if sock.fileno() == -1:  # closed under us (stop)
                    return
                core.errors.report("recv", f"{type(exc).__name__}: {exc}")
                self._running.wait(0.01)  # a persistent error must not spin a core
                continue
            try:
                if srv.verify_request(None, sender):
                    core.handle_datagram(data, sender)
            except Exception:  # noqa: BLE001 - last resort: log, keep serving
                srv.handle_error(None, sender)

    def start(self) -> BridgeServer:
        self.core.start()
        self._running.set()
        self._thread = threading.Thread(target=self._receive_loop, name="fxmix-bridge-recv", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until KeyboardInterrupt (the CLI)."""
        self.core.start()
        self._running.set()
        try:
            self._receive_loop(poll_s=0.2)
        finally:
            self._running.clear()
            self.core.stop()
            self._server.server_close()

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self.core.stop()
        self._server.server_close()

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
