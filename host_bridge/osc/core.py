"""Transport-independent OSC protocol of the bridge: routes, validation, block assembly on the receive thread,
and the hand-over of typed requests to the worker (:mod:`.worker`).

Handlers are plain callables ``handler(sender, address, *args)``, listed in one ``ROUTES`` table built from
:mod:`.addresses`; they validate, assemble blocks and queue requests, and can be called without a socket
(:meth:`BridgeCore.handle_datagram` takes raw bytes). A session's assembler is used by the receive thread and
(for the reorder timeout) the worker, under the inbox's one lock.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import math
import secrets
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from pythonosc.osc_message_builder import BuildError

from . import addresses as A
from .assembler import BlockAssembler
from .codec import (
    BLOCK_AUDIO_OFFSET,
    INT32_MAX,
    INT32_MIN,
    PARSE_ERRORS,
    block_header,
    build_message,
    check_types,
    decode_block,
    expected_types,
    is_osc,
    parse_messages,
    type_name,
)
from .inbox import Inbox
from .log import ErrorLog, install_python_osc_filter
from .requests import (
    Address,
    CloseRequest,
    ControlRequest,
    LatencyQuery,
    OpenRequest,
    ParamsQuery,
    ProfileRequest,
    ReplyToRequest,
    Request,
    ResetRequest,
    SlotConfig,
    StateQuery,
    StatsQuery,
    TrackRequest,
)
from .worker import IDLE_TIMEOUT_S, SessionFactory, Worker, WorkerOptions

Handler = Callable[..., None]

#: Why an open, close or reset the worker could not be given is refused (all or nothing; the sender retries).
BUSY = "server busy (queue full); send it again"

#: Most ``/fxmix/error`` replies per second (token bucket), so bad requests cannot be amplified.
ERROR_REPLIES_PER_S = 20.0
#: A cookie is valid for the period it was made in and the next one (s): 2 to 4 minutes.
COOKIE_PERIOD_S = 120.0
#: Characters of a cookie (URL-safe base64 of an HMAC-SHA256: 66 bits). With the session number, the
#: ``/fxmix/cookie`` reply is 36 bytes, the size of the 4-argument ``/fxmix/open`` that asks for it.
COOKIE_CHARS = 11
#: What encoding a reply may raise on values it cannot hold (counted as ``send``, never raised).
_ENCODE_ERRORS = (OSError, struct.error, OverflowError, ValueError, BuildError)


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (a spoofed loopback source cannot arrive from another host: the kernel
    drops it as a martian)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
            fresher than :data:`~.worker.CATCH_UP_S`, so latency stays bounded; None never skips
            (deterministic, for tests).
        log_interval_s: per-kind rate limit of problem log lines.
        shared_control: any sender may use any session; otherwise a session belongs to the address that opened
            it and other senders' requests for it are refused with ``/fxmix/error``.
        idle_timeout_s: close a session that had no request (block, control, query) for this long; None: never.
        trust_loopback: loopback senders count as verified (see :meth:`reply_limit`).
        realtime_priority: run the receive and worker threads in SCHED_FIFO at this priority, the engine's
            between-blocks thread one step under (:mod:`.priority`); None: leave scheduling as it is.
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
        shared_control: bool = False,
        idle_timeout_s: float | None = IDLE_TIMEOUT_S,
        trust_loopback: bool = True,
        realtime_priority: int | None = None,
    ) -> None:
        self._send_raw = send
        self.shared_control = bool(shared_control)
        self.trust_loopback = bool(trust_loopback)
        #: size of the datagram being handled (receive thread), the reply cap of an unverified sender
        self._request_size = 0
        self.window_blocks = int(window_blocks)
        self.errors = ErrorLog(log_interval_s)
        self.counters: Counter[str] = Counter()
        self.inbox = Inbox(self.errors, queue_size, max_queued_bytes)
        options = WorkerOptions(
            default_profile, reply_to, reaper_feedback, int(reaper_track_offset), reorder_timeout_s,
            params_interval_s, max_backlog_s, idle_timeout_s, realtime_priority,
        )  # fmt: skip
        self.worker = Worker(
            self.inbox, self.errors, self.counters, self.send, self._worker_error, session_factory, options,
            self.send_datagram,
        )  # fmt: skip
        self._error_lock = threading.Lock()
        self._cookie_key = secrets.token_bytes(32)  # per server run: restarting invalidates every cookie
        self._error_tokens, self._error_t = float(ERROR_REPLIES_PER_S), time.monotonic()
        install_python_osc_filter()
        #: ROUTES: OSC address -> plain handler ``handler(sender, address, *args)`` (STYLE rule 12).
        self.ROUTES: dict[str, Handler] = {addr: getattr(self, r.handler) for addr, r in A.INBOUND.items()}

    # ------------------------------------------------------------ lifecycle (the worker thread)

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        self.worker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker thread (pending messages are dropped) and close every session."""
        self.worker.stop(timeout_s)

    def process_item(self, request: Request) -> None:
        """Run one queued request now, on the calling thread (tests; the worker thread does this itself)."""
        self.worker.process(request)

    def stats(self, session: int = -1) -> dict[str, Any]:
        """Server counters, and the session's block and engine statistics when ``session`` >= 0."""
        return self.worker.stats(session)

    # ------------------------------------------------------------ receive path (socket thread)

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        """Parse, validate and route one datagram. Never raises on bad input; never blocks."""
        counters = self.counters
        counters["datagrams"] += 1
        self._request_size = len(data)
        header = block_header(data)
        if header is not None:  # the audio path: no python-osc parse, no copy before the assembler's
            counters["messages"] += 1
            self._block(sender, *header, data, BLOCK_AUDIO_OFFSET, len(data) - BLOCK_AUDIO_OFFSET)
            return
        if not is_osc(data):
            self.errors.report("not_osc", f"{len(data)} bytes from {sender[0]}:{sender[1]}")
            return
        try:
            messages = parse_messages(data)
        except PARSE_ERRORS as exc:
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
        checked = check_types(route.types, args, route.optional)
        if checked is None:
            self._bad_types(address, route, args, sender)
            return
        handler(sender, address, *checked)

    def _bad_types(self, address: str, route: A.Route, args: Sequence[Any], sender: Address) -> None:
        """Count, log (rate-limited) and answer ``/fxmix/error`` naming the address and the expected types."""
        got = ", ".join(type_name(a) for a in args) or "none"
        message = f"{address}: wrong argument types ({got}); expected ({expected_types(route)})"
        self.errors.report("bad_types", f"{message} from {sender[0]}:{sender[1]}")
        first = args[0] if args else None
        session = first if type(first) is int and INT32_MIN <= first <= INT32_MAX else -1
        self._send_error(sender, session, message, self._request_size)

    def _slot(self, session: int, address: str, sender: Address) -> SlotConfig | None:
        """The session's slot if it is open and ``sender`` may use it (else counted and, for another
        sender's session, refused with ``/fxmix/error``)."""
        slot = self.inbox.slots.get(session)
        if slot is None:
            self.errors.report(
                "unknown_session", f"{address} for session {session} from {sender[0]}:{sender[1]}"
            )
            return None
        return slot if self._may_use(slot, session, address, sender) else None

    def _may_use(self, slot: SlotConfig, session: int, address: str, sender: Address) -> bool:
        if self.shared_control or slot.owner is None or slot.owner == sender:
            return True
        message = (
            f"{address}: session {session} belongs to the sender that opened it; open your own session "
            "(or start the server with --shared-control)"
        )
        self.errors.report("not_owner", f"{message} ({sender[0]}:{sender[1]})")
        self._send_error(sender, session, message, self._request_size)
        return False

    def verified(self, sender: Address) -> bool:
        """A sender that owns an open session (or, with ``trust_loopback``, sends from loopback)."""
        if self.trust_loopback and is_loopback(sender[0]):
            return True
        return any(slot.owner == sender for slot in list(self.inbox.slots.values()))

    def reply_limit(self, sender: Address) -> int | None:
        """Most bytes a reply to the datagram being handled may have: none for a verified sender, else the
        request's own size, so a spoofed source address gets no amplification."""
        return None if self.verified(sender) else self._request_size

    def cookie(self, sender: Address, period: int | None = None) -> str:
        """The open cookie of ``sender`` (host, port) for a cookie period (default: now): an HMAC under this
        server run's random key, so the server keeps no state per asker and only that address receives it."""
        if period is None:
            period = int(time.monotonic() // COOKIE_PERIOD_S)
        mac = hmac.new(self._cookie_key, f"{sender[0]}|{sender[1]}|{period}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode()[:COOKIE_CHARS]

    def _cookie_ok(self, sender: Address, cookie: str) -> bool:
        if not cookie:
            return False
        now = int(time.monotonic() // COOKIE_PERIOD_S)
        return any(hmac.compare_digest(cookie, self.cookie(sender, p)) for p in (now, now - 1))

    def _proved(self, sender: Address, session: int, cookie: str) -> bool:
        """Whether ``sender`` has proved it receives at its address (verified, or it echoes its cookie);
        otherwise it is sent ``/fxmix/cookie`` (no larger than its request) and the open waits for the echo, so
        a spoofed open makes no one an owner and opens nothing."""
        if self.verified(sender) or self._cookie_ok(sender, cookie):
            return True
        if cookie:
            self.errors.report("bad_cookie", f"session {session} from {sender[0]}:{sender[1]}")
        self.counters["cookies_sent"] += 1
        self.send("/fxmix/cookie", [session, self.cookie(sender)], sender, self._request_size)
        return False

    # ------------------------------------------------------------ handlers: sessions (all or nothing)

    def on_open(
        self,
        sender: Address,
        address: str,
        session: int,
        sample_rate: int,
        block_samples: int,
        n_tracks: int,
        cookie: str = "",
    ) -> None:
        if not self._proved(sender, session, cookie):
            return
        problems = []
        if not A.MIN_SAMPLE_RATE <= sample_rate <= A.MAX_SAMPLE_RATE:
            problems.append(f"sample_rate {sample_rate} not in [{A.MIN_SAMPLE_RATE}, {A.MAX_SAMPLE_RATE}]")
        if not A.MIN_BLOCK_SAMPLES <= block_samples <= A.MAX_BLOCK_SAMPLES:
            problems.append(
                f"block_samples {block_samples} not in [{A.MIN_BLOCK_SAMPLES}, {A.MAX_BLOCK_SAMPLES}]"
            )
        if not 1 <= n_tracks <= A.MAX_TRACKS:
            problems.append(f"n_tracks {n_tracks} not in [1, {A.MAX_TRACKS}]")
        inbox = self.inbox
        current = inbox.slots.get(session)
        if current is not None and not self._may_use(current, session, address, sender):
            return
        with inbox.lock:
            if session not in inbox.slots and len(inbox.slots) >= A.MAX_SESSIONS:
                problems.append(f"{A.MAX_SESSIONS} sessions already open; close one first")
            if not problems and 2 * n_tracks * block_samples * 4 > inbox.max_queued_bytes:
                problems.append(
                    f"a block of {n_tracks} tracks x {block_samples} samples exceeds the server's queue"
                )
            if not problems:
                # all or nothing: the slot exists only if the worker will open the engine for it
                asm = BlockAssembler(n_tracks, block_samples, self.window_blocks)
                slot = SlotConfig(sample_rate, block_samples, n_tracks, asm, sender)
                if inbox.put(OpenRequest(sender, session, slot)):
                    inbox.slots[session] = slot
                else:
                    problems.append(BUSY)
        if problems:
            self._reject(sender, session, f"{address}: " + "; ".join(problems))

    def on_close(self, sender: Address, address: str, session: int) -> None:
        inbox = self.inbox
        current = inbox.slots.get(session)
        if current is not None and not self._may_use(current, session, address, sender):
            return
        with inbox.lock:
            found = inbox.slots.get(session)
            queued = found is not None and inbox.put(CloseRequest(session))
            if queued:  # all or nothing: a close the worker will not see leaves the session open
                del inbox.slots[session]
        if found is None:
            self.errors.report(
                "unknown_session", f"{address} for session {session} from {sender[0]}:{sender[1]}"
            )
        elif not queued:
            self._reject(sender, session, f"{address}: {BUSY}")

    def on_reset(self, sender: Address, address: str, session: int) -> None:
        slot = self._slot(session, address, sender)
        if slot is None:
            return
        with self.inbox.lock:  # blocks assembled before the reset are queued ahead of it, later ones after
            queued = self.inbox.put(ResetRequest(session))
            if queued:  # all or nothing: engine and assembler reset together
                slot.assembler.reset()
        if not queued:
            self._reject(sender, session, f"{address}: {BUSY}")

    # ------------------------------------------------------------ handlers: audio

    def on_block(
        self, sender: Address, address: str, session: int, track: int, seq: int, audio: bytes
    ) -> None:
        self._block(sender, session, track, seq, audio, 0, len(audio))

    def _block(
        self, sender: Address, session: int, track: int, seq: int, data: bytes, offset: int, size: int
    ) -> None:
        """One track block whose samples are ``data[offset:offset + size]``: checked, then copied once, into the
        session's assembler."""
        slot = self.inbox.slots.get(session)
        if slot is None:
            self.errors.report(
                "unknown_session", f"/fxmix/block for session {session} from {sender[0]}:{sender[1]}"
            )
            return
        if slot.owner != sender and not self.shared_control and not self._may_use(slot, session, "/fxmix/block", sender):
            return
        if not 0 <= track < slot.n_tracks or seq < 0:
            self.errors.report(
                "bad_value", f"/fxmix/block: track {track}, seq {seq} (session has {slot.n_tracks} tracks)"
            )
            return
        want = 2 * slot.block_samples * 4
        if size != want:
            self.errors.report(
                "blob_size",
                f"session {session} track {track} seq {seq}: {size} bytes, expected {want} "
                f"(2 x {slot.block_samples} float32)",
            )
            return
        # NaN/inf and huge samples are dealt with once per complete block, by the assembler
        block = decode_block(data, slot.block_samples, offset)
        self.inbox.push_block(session, slot, seq, track, block, time.monotonic())

    def on_flush(self, sender: Address, address: str, session: int) -> None:
        slot = self._slot(session, address, sender)
        if slot is not None:
            self.inbox.release(session, slot, BlockAssembler.flush, time.monotonic())

    # ------------------------------------------------------------ handlers: tracks, controls, queries

    def on_track(
        self, sender: Address, address: str, session: int, track: int, class_name: str, name: str
    ) -> None:
        slot = self._slot(session, address, sender)
        if slot is None:
            return
        if not 0 <= track < slot.n_tracks:
            self._reject(sender, session, f"{address}: track {track} not in [0, {slot.n_tracks - 1}]")
            return
        self.inbox.submit(TrackRequest(sender, session, track, class_name or None, name or None))

    def on_control(self, sender: Address, address: str, session: int, name: str, value: float) -> None:
        if self._slot(session, address, sender) is None:
            return
        if not math.isfinite(value):
            self._reject(sender, session, f"{address}: {name} = {value} is not finite")
            return
        self.inbox.submit(ControlRequest(sender, session, name, value))

    def on_profile(self, sender: Address, address: str, session: int, profile: str) -> None:
        if self._slot(session, address, sender) is not None:
            self.inbox.submit(ProfileRequest(sender, session, profile))

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
        self.inbox.submit(ReplyToRequest(session, (host, port)))

    def on_query_latency(self, sender: Address, address: str, session: int) -> None:
        if self._slot(session, address, sender) is not None:
            self.inbox.submit(LatencyQuery(sender, session, self.reply_limit(sender)))

    def on_query_state(self, sender: Address, address: str, session: int) -> None:
        if self._slot(session, address, sender) is not None:
            self.inbox.submit(StateQuery(sender, session, self.reply_limit(sender)))

    def on_query_stats(self, sender: Address, address: str, session: int) -> None:
        if session == -1 or self._slot(session, address, sender) is not None:
            self.inbox.submit(StatsQuery(sender, session, self.reply_limit(sender)))

    def on_query_params(self, sender: Address, address: str, session: int) -> None:
        if self._slot(session, address, sender) is not None:
            self.inbox.submit(ParamsQuery(sender, session, self.reply_limit(sender)))

    def on_ping(self, sender: Address, address: str, token: int) -> None:
        # no session state: answered on the receive thread
        self.send("/fxmix/pong", [token], sender, self.reply_limit(sender))

    def on_health(self, sender: Address, address: str, token: int) -> None:
        """Answered on the receive thread, so it reports a stuck worker instead of waiting behind it."""
        worker = self.worker
        busy_since = worker.busy_since
        lag_ms = 1000.0 * (time.monotonic() - busy_since) if busy_since else 0.0
        args = [token, min(INT32_MAX, int(lag_ms)), self.inbox.qsize(), worker.skipped_total, len(self.inbox.slots)]
        self.send("/fxmix/health", args, sender, self.reply_limit(sender))

    # ------------------------------------------------------------ sending

    def _reject(self, sender: Address, session: int, message: str) -> None:
        self.errors.report("bad_value", message)
        self._send_error(sender, session, message, self._request_size)

    def _worker_error(self, sender: Address, session: int, message: str) -> None:
        """``/fxmix/error`` from the worker: only to verified senders (their request's size is gone by now)."""
        self._send_error(sender, session, message, 0)

    def _send_error(self, sender: Address, session: int, message: str, request_size: int) -> None:
        """Reply ``/fxmix/error``; at most ``ERROR_REPLIES_PER_S`` per second (no amplification under floods),
        and to an unverified sender cut to the size of its request (dropped when even that does not fit)."""
        limit = None if self.verified(sender) else request_size
        if limit is not None:
            room = limit - len(build_message("/fxmix/error", [session, ""], "is")) - 3
            if room < 8:
                self.errors.report("reply_capped", f"/fxmix/error to {sender[0]}:{sender[1]}")
                return
            message = message[:room]
        now = time.monotonic()
        with self._error_lock:
            self._error_tokens = min(
                ERROR_REPLIES_PER_S, self._error_tokens + (now - self._error_t) * ERROR_REPLIES_PER_S
            )
            self._error_t = now
            if self._error_tokens < 1.0:
                return
            self._error_tokens -= 1.0
        self.send("/fxmix/error", [session, message[:1000]], sender, limit)

    def send_datagram(self, data: bytes, to: Address) -> None:
        """Send an encoded datagram; a failed send is counted."""
        try:
            self._send_raw(data, to)
        except _ENCODE_ERRORS as exc:
            self.errors.report("send", f"{len(data)} bytes to {to[0]}:{to[1]}: {type(exc).__name__}: {exc}")

    def send(self, address: str, args: Sequence[Any], to: Address, limit: int | None = None) -> None:
        """Encode ``address`` with the address table's types and send it; a failed send is counted, and a reply
        longer than ``limit`` bytes is not sent (counted as ``reply_capped``)."""
        route = A.OUTBOUND.get(address)
        try:
            data = build_message(address, args, route.types if route else None)
            if limit is not None and len(data) > limit:
                self.errors.report("reply_capped", f"{address}: {len(data)} > {limit} bytes to {to[0]}:{to[1]}")
                return
            self._send_raw(data, to)
        except _ENCODE_ERRORS as exc:
            self.errors.report("send", f"{address} to {to[0]}:{to[1]}: {type(exc).__name__}: {exc}")
