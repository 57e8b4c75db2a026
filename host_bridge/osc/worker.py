"""The bridge's worker thread: runs queued requests against engine sessions, in arrival order, so a session is
never used from two threads. One handler per request type (:attr:`Worker.handlers`).

Engine sessions are built and closed on a separate opener thread, so an ``/fxmix/open`` (ONNX Runtime session,
planner set-up: ~0.3 s) never stalls the live sessions the worker mixes; the worker swaps a built session in
(:class:`~.requests.BuiltRequest`), and requests for a session still opening wait for it (blocks are dropped
and counted as ``opening``)."""

from __future__ import annotations

import gc
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...dsp.errors import FxmixError
from . import addresses as A
from .codec import encode_mix, to_json
from .inbox import Inbox
from .log import PYTHON_OSC_ERRORS, ErrorLog, log
from .priority import below_creator, describe_thread, leave_realtime, realtime_thread
from .requests import (
    Address,
    BuiltRequest,
    CloseRequest,
    ControlRequest,
    LatencyQuery,
    MixRequest,
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
    WakeRequest,
)

#: ``factory(sample_rate, block_samples, n_tracks, profile) -> Session``
SessionFactory = Callable[[int, int, int, str | None], Any]
#: ``send(address, args, to, limit=None)``: encode with the address table's types and send (errors counted, not
#: raised); a reply longer than ``limit`` bytes is not sent (counted as ``reply_capped``).
Send = Callable[..., None]
#: ``send_datagram(data, to)``: send encoded bytes (errors counted, not raised).
SendDatagram = Callable[[bytes, Address], None]
#: ``reply_error(sender, session, message)``: the rate-limited ``/fxmix/error`` reply.
ReplyError = Callable[[Address, int, str], None]

#: After falling behind real time, the worker skips the engine until queued blocks are this fresh again (s).
CATCH_UP_S = 0.02
#: Most requests held for a session that is still opening, and most audio among them (bytes).
MAX_HELD = 256
MAX_HELD_BYTES = 16 << 20
#: Default of ``--idle-timeout`` (s): a session with no request for this long is closed.
IDLE_TIMEOUT_S = 300.0
#: Most recent blocks whose turnaround (last track read -> mix sent) a session keeps for its statistics.
TURNAROUND_BLOCKS = 8192


@dataclass
class LiveSession:
    """Worker-side state of one open session."""

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
    #: per mixed block, seconds from its completion on the receive thread to its mix sent (the most recent ones)
    turnaround_s: deque = field(default_factory=lambda: deque(maxlen=TURNAROUND_BLOCKS))
    last_active_t: float = field(default_factory=time.monotonic)
    #: the profile switch being built (a newer one makes an older build stale)
    switch: object = None


@dataclass
class Opening:
    """A session being built on the opener thread; its requests wait in ``held`` until it is ready."""

    config: SlotConfig
    sender: Address
    held: list = field(default_factory=list)
    held_bytes: int = 0


@dataclass(frozen=True)
class WorkerOptions:
    """The worker's share of :class:`~fxmix.host_bridge.osc.core.BridgeCore`'s settings (documented there)."""

    default_profile: str | None = None
    reply_to: Address | None = None
    reaper_feedback: Address | None = None
    reaper_track_offset: int = 1
    reorder_timeout_s: float | None = 0.05
    params_interval_s: float | None = 0.5
    max_backlog_s: float | None = 0.2
    idle_timeout_s: float | None = IDLE_TIMEOUT_S
    realtime_priority: int | None = None


def close_engine(engine: Any) -> None:
    close = getattr(engine, "close", None)  # frees the engine's planning thread
    if close is not None:
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - a failing close must not take the opener thread down
            log.warning("bridge: closing a session failed: %s: %s", type(exc).__name__, exc)


def build_engine(factory: SessionFactory, cfg: SlotConfig, profile: str | None) -> tuple[Any, str | None]:
    """``(engine, None)`` or ``(None, why)``: never raises (an open that fails is answered, never left half open).

    After a build everything alive (engine, network, libraries) moves out of the collector's generations: a
    full collection over them costs ~0.1 s, which would land inside some later block's processing. Only the
    objects made since the last freeze are traversed here, so this is cheap."""
    try:
        engine = factory(cfg.sample_rate, cfg.block_samples, cfg.n_tracks, profile)
    except Exception as exc:  # noqa: BLE001 - any failure becomes the /fxmix/error reply
        return None, str(exc) if isinstance(exc, (FxmixError, ValueError)) else f"{type(exc).__name__}: {exc}"
    gc.collect()
    gc.freeze()
    return engine, None


class Worker:
    """Consumes the :class:`Inbox`; owns the engine sessions.

    Args:
        inbox: the requests and slots shared with the receive thread.
        errors: problem counters.
        counters: the server's message counters (reported by ``/fxmix/query/stats``).
        send: sends one reply.
        send_datagram: sends one encoded datagram (the mixed blocks, encoded by :func:`~.codec.encode_mix`).
        reply_error: sends a rate-limited ``/fxmix/error``.
        session_factory: builds an engine session.
        options: profile, reply address, Reaper feedback, reorder timeout, params interval, backlog limit.
    """

    def __init__(
        self,
        inbox: Inbox,
        errors: ErrorLog,
        counters: Counter[str],
        send: Send,
        reply_error: ReplyError,
        session_factory: SessionFactory,
        options: WorkerOptions,
        send_datagram: SendDatagram,
    ) -> None:
        self.inbox = inbox
        self.send_datagram = send_datagram
        self.errors = errors
        self.counters = counters
        self.send = send
        self.reply_error = reply_error
        self.session_factory = session_factory
        self.options = options
        self.live: dict[int, LiveSession] = {}
        self.opening: dict[int, Opening] = {}
        self._behind = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: builds and closes engine sessions off the worker (None until :meth:`start`: then inline)
        self._opener: ThreadPoolExecutor | None = None
        self._built: deque[BuiltRequest] = deque()
        #: ``time.monotonic()`` when the worker started its current request (0: waiting), for the health query
        self.busy_since = 0.0
        self.skipped_total = 0
        self._next_idle_check = 0.0
        #: thread -> its scheduling (:func:`~.priority.describe_thread`), reported by the stats query
        self.scheduling: dict[str, str] = {}
        #: request type -> its one handler
        self.handlers: dict[type, Callable[[Any], None]] = {
            OpenRequest: self._open,
            CloseRequest: self._close,
            TrackRequest: self._track,
            MixRequest: self._mix,
            ControlRequest: self._control,
            ProfileRequest: self._profile,
            ResetRequest: self._reset,
            ReplyToRequest: self._reply_to,
            LatencyQuery: self._query_latency,
            StateQuery: self._query_state,
            StatsQuery: self._query_stats,
            ParamsQuery: self._query_params,
            BuiltRequest: self._on_built,
            WakeRequest: lambda req: None,
        }

    # ------------------------------------------------------------ thread

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            # session builds take a core for ~0.3 s: never in the real-time class the worker may have
            self._opener = ThreadPoolExecutor(1, "fxmix-bridge-opener", initializer=leave_realtime)
            self._thread = threading.Thread(target=self._run, name="fxmix-bridge-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (pending requests are dropped) and close every session."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        opener, self._opener = self._opener, None
        if opener is not None:
            opener.shutdown(wait=True)
        self.inbox.clear()
        engines = [lv.session for lv in self.live.values()] + [b.engine for b in self._built]
        self.live.clear()
        self.opening.clear()
        self._built.clear()
        for engine in engines:
            close_engine(engine)

    def _run(self) -> None:
        priority = self.options.realtime_priority
        self.scheduling["worker"] = describe_thread() if priority is None else realtime_thread(priority)
        while not self._stop.is_set():
            request = self.inbox.get(self._wait_s())
            self.busy_since = time.monotonic()
            try:
                if request is not None:
                    self.process(request)
                while self._built:
                    self.process(self._built.popleft())
                self._flush_stale()
                self._expire_idle()
            except Exception as exc:  # noqa: BLE001 - top-level guard: the worker must never die
                # Typed engine errors are handled per request; anything else is logged and counted here.
                what = request.kind if request is not None else "timer"
                self.errors.report("engine", f"{what}: {type(exc).__name__}: {exc}")
            finally:
                self.busy_since = 0.0
                if request is not None:
                    self.inbox.task_done()

    def process(self, request: Request) -> None:
        """Run one request with its handler (worker thread; tests may call it directly)."""
        kind = type(request)
        if self.opening and kind not in (OpenRequest, CloseRequest, BuiltRequest, WakeRequest):
            op = self.opening.get(getattr(request, "session", -1))
            if op is not None:
                self._hold(op, request)
                return
        self.handlers[kind](request)

    def _hold(self, op: Opening, request: Request) -> None:
        """A request for a session still opening waits for it (bounded; beyond that blocks are dropped as
        ``opening``, other requests as ``queue_full``)."""
        size = request.blocks.nbytes if type(request) is MixRequest else 0
        if size and request.slot is not op.config:
            return  # assembled for an earlier opening of this session number
        if len(op.held) < MAX_HELD and op.held_bytes + size <= MAX_HELD_BYTES:
            op.held.append(request)
            op.held_bytes += size
        elif size:
            self.errors.report("opening", f"session {request.session} block {request.seq}")
        else:
            self.errors.report("queue_full", f"session {request.session} still opening; dropped {request.kind}")

    def _wait_s(self) -> float:
        if self.options.reorder_timeout_s is None:
            return 0.1
        oldest = self.inbox.oldest_pending_t()
        if oldest is None:
            return 0.1
        return max(0.0005, min(0.1, oldest + self.options.reorder_timeout_s - time.monotonic()))

    def _flush_stale(self) -> None:
        """Release blocks whose tracks stopped coming (reorder timeout)."""
        timeout_s = self.options.reorder_timeout_s
        if timeout_s is None:
            return
        now = time.monotonic()
        for sid, slot in self.inbox.slots_with_pending():  # (release skips a slot closed or re-opened since)
            self.inbox.release(sid, slot, lambda asm: asm.flush_stale(now, timeout_s), now)

    # ------------------------------------------------------------ helpers

    def _live_or_report(self, session: int, what: str) -> LiveSession | None:
        lv = self.live.get(session)
        if lv is None:
            self.errors.report(
                "unknown_session", f"{what} for session {session} (not open or failed to open)"
            )
        else:
            lv.last_active_t = time.monotonic()
        return lv

    def _engine_error(self, sender: Address, session: int, message: str) -> None:
        self.errors.report("engine", f"session {session} {message}")
        self.reply_error(sender, session, message)

    # ------------------------------------------------------------ session life

    def _dispose(self, engine: Any) -> None:
        """Close an engine off the worker (its threads and planner take a while to stop)."""
        if engine is None:
            return
        if self._opener is not None:
            self._opener.submit(close_engine, engine)
        else:
            close_engine(engine)

    def _build(self, session: int, cfg: SlotConfig, profile: str | None, token: object, sender: Address) -> None:
        """Build an engine for ``cfg`` on the opener thread; the worker gets a :class:`BuiltRequest` back."""

        def job() -> BuiltRequest:
            engine, error = build_engine(self.session_factory, cfg, profile)
            return BuiltRequest(session, cfg, token, sender, profile, engine, error)

        if self._opener is None:  # the worker thread is not running (tests drive process() themselves)
            self._on_built(job())
            return

        def done_in_background() -> None:
            self._built.append(job())
            with self.inbox.lock:
                self.inbox.put(WakeRequest())  # best effort: a full queue wakes the worker anyway

        self._opener.submit(done_in_background)

    def _open(self, req: OpenRequest) -> None:
        session, cfg = req.session, req.slot
        previous = self.live.pop(session, None)
        if previous is not None:
            self._dispose(previous.session)
        op = self.opening[session] = Opening(cfg, req.sender)
        self._build(session, cfg, self.options.default_profile, op, req.sender)

    def _on_built(self, b: BuiltRequest) -> None:
        if isinstance(b.token, Opening):
            self._opened(b)
            return
        lv = self.live.get(b.session)
        if lv is None or lv.config is not b.slot or lv.switch is not b.token:
            self._dispose(b.engine)  # closed, re-opened or switched again meanwhile
            return
        lv.switch = None
        if b.error is not None:
            self._engine_error(b.sender, b.session, f"/fxmix/profile {b.profile!r}: {b.error}")
            return
        try:
            for track, (class_name, name) in sorted(lv.tracks.items()):
                b.engine.set_track(track, class_name=class_name, name=name)
            for name, value in lv.controls.items():
                b.engine.set_control(name, value)
        except (FxmixError, ValueError, KeyError) as exc:
            self._dispose(b.engine)
            self._engine_error(b.sender, b.session, f"/fxmix/profile {b.profile!r}: {exc}")
            return
        self._dispose(lv.session)
        lv.session, lv.profile = b.engine, b.profile
        log.info("bridge: session %d now uses profile %s", b.session, b.profile)
        self.send("/fxmix/latency", [b.session, int(b.engine.latency_samples)], lv.reply_to)

    def _opened(self, b: BuiltRequest) -> None:
        session, cfg, op = b.session, b.slot, b.token
        if self.opening.get(session) is not op:
            self._dispose(b.engine)  # closed or re-opened while it was being built
            return
        del self.opening[session]
        if b.error is not None:
            self.inbox.drop_slot(session, cfg)
            self._engine_error(b.sender, session, f"open failed: {b.error}")
            return
        engine = b.engine
        self._step_below(engine)
        reply_to = self.options.reply_to or b.sender
        self.live[session] = LiveSession(cfg, engine, reply_to, b.profile)
        log.info(
            "bridge: session %d open: %d Hz, %d-sample blocks, %d tracks, latency %d samples; replies to %s:%d",
            session, cfg.sample_rate, cfg.block_samples, cfg.n_tracks, int(engine.latency_samples), *reply_to,
        )  # fmt: skip
        self.send(
            "/fxmix/opened", [session, int(engine.latency_samples), cfg.block_samples, cfg.n_tracks], reply_to
        )
        for request in op.held:  # (blocks held longer than the backlog limit are skipped as overload)
            self.process(request)

    def _step_below(self, engine: Any) -> None:
        """Schedule the engine's background thread, which this thread creates (so it inherits its class): a
        pipelined engine's between-blocks thread computes the block the next one waits for, so it stays real-time,
        one step under the worker (whose arrivals preempt it); any other background work (statistics, a console
        session's analyses) may wait, so it leaves the real-time class. A no-op in the normal class."""
        defer, worker = getattr(engine, "defer", None), threading.get_native_id()
        if defer is None:
            return
        step = below_creator if getattr(engine, "pipeline", False) else leave_realtime

        def lower() -> None:
            if threading.get_native_id() != worker:  # (inline on the worker for sessions without the thread)
                self.scheduling["between_blocks"] = step()

        defer(lower)

    def _close(self, req: CloseRequest) -> None:
        self.opening.pop(req.session, None)  # a build in flight is closed when it arrives
        lv = self.live.pop(req.session, None)
        if lv is not None:
            self._dispose(lv.session)
            log.info("bridge: session %d closed", req.session)

    def _expire_idle(self) -> None:
        """Close sessions that had no request for ``idle_timeout_s`` (checked about once a second)."""
        timeout_s, now = self.options.idle_timeout_s, time.monotonic()
        if timeout_s is None or now < self._next_idle_check:
            return
        self._next_idle_check = now + min(1.0, timeout_s / 4)
        for session, lv in list(self.live.items()):
            if now - lv.last_active_t < timeout_s:
                continue
            self.inbox.drop_slot(session, lv.config)
            del self.live[session]
            self._dispose(lv.session)
            message = f"session {session} closed after {timeout_s:.0f} s without requests (--idle-timeout)"
            log.info("bridge: %s", message)
            self.reply_error(lv.reply_to, session, message)

    def _profile(self, req: ProfileRequest) -> None:
        lv = self._live_or_report(req.session, "/fxmix/profile")
        if lv is not None:
            lv.switch = token = object()
            self._build(req.session, lv.config, req.profile, token, req.sender)

    def _reset(self, req: ResetRequest) -> None:
        lv = self._live_or_report(req.session, "/fxmix/reset")
        if lv is not None:
            lv.session.set_control("reset", 1.0)  # clears tails and running statistics, keeps tracks

    def _reply_to(self, req: ReplyToRequest) -> None:
        lv = self._live_or_report(req.session, "/fxmix/reply")
        if lv is not None:
            lv.reply_to = req.to

    # ------------------------------------------------------------ tracks, controls, audio

    def _track(self, req: TrackRequest) -> None:
        lv = self._live_or_report(req.session, "/fxmix/track")
        if lv is None:
            return
        try:
            lv.session.set_track(req.track, class_name=req.class_name, name=req.name)
        except (FxmixError, ValueError, KeyError) as exc:
            self._engine_error(req.sender, req.session, f"/fxmix/track {req.track} {req.class_name!r}: {exc}")
            return
        old_class, old_name = lv.tracks.get(req.track, (None, None))
        lv.tracks[req.track] = (req.class_name or old_class, req.name or old_name)

    def _control(self, req: ControlRequest) -> None:
        lv = self._live_or_report(req.session, "/fxmix/control")
        if lv is None:
            return
        try:
            lv.session.set_control(req.name, req.value)
        except (FxmixError, ValueError, KeyError) as exc:
            self._engine_error(req.sender, req.session, f"/fxmix/control {req.name!r} = {req.value}: {exc}")
            return
        if req.name != "reset":
            lv.controls[req.name] = req.value

    def _mix(self, req: MixRequest) -> None:
        """Mix one complete multitrack block (queued by the receive thread when its last track came in)."""
        max_backlog_s = self.options.max_backlog_s
        if max_backlog_s is not None:  # hysteresis: once behind, skip until (nearly) caught up
            age_s = time.monotonic() - req.t_ready
            self._behind = age_s > (min(CATCH_UP_S, max_backlog_s) if self._behind else max_backlog_s)
        lv = self.live.get(req.session)
        if lv is None:
            self.errors.report(
                "unknown_session", f"/fxmix/block for session {req.session} (closed or failed to open)"
            )
            return
        if lv.config is not req.slot:
            return  # assembled for an earlier opening of this session number
        lv.last_active_t = req.t_ready
        if self._behind:  # shed load: skip the engine until the queue is back under max_backlog_s
            lv.skipped_blocks += 1
            self.skipped_total += 1
            self.errors.report("overload", f"session {req.session} block {req.seq} not mixed")
            return
        t0 = time.perf_counter()
        start_later = hasattr(lv.session, "start_background")
        try:
            # the engine's between-blocks work starts once the mix is sent, not while it is being sent
            mix = (
                lv.session.process(req.blocks, start_background=False)
                if start_later
                else lv.session.process(req.blocks)
            )
            dt = time.perf_counter() - t0
            lv.process_s_total += dt
            lv.process_s_max = max(lv.process_s_max, dt)
            lv.mixed += 1
            self.send_datagram(encode_mix(req.session, req.seq, mix), lv.reply_to)
            lv.turnaround_s.append(time.monotonic() - req.t_ready)
        finally:
            if start_later:
                lv.session.start_background()
        self._push_params_when_due(req.session, lv)

    # ------------------------------------------------------------ parameters out

    def _push_params_when_due(self, session: int, lv: LiveSession) -> None:
        interval_s = self.options.params_interval_s
        if interval_s is None or (now := time.monotonic()) - lv.last_params_t < interval_s or not lv.mixed:
            return
        lv.last_params_t = now
        defer = getattr(lv.session, "defer", None)
        if defer is not None:  # on the engine's between-blocks thread, not this one
            defer(self._push_params, session, lv)
        else:
            self._push_params(session, lv)

    def _push_params(
        self, session: int, lv: LiveSession, to: Address | None = None, limit: int | None = None
    ) -> None:
        if hasattr(lv.session, "all_track_params"):
            every = lv.session.all_track_params()
        else:
            every = [lv.session.track_params(t) for t in range(lv.config.n_tracks)]
        for track, params in enumerate(every):
            self.send("/fxmix/params", [session, track, to_json(params)], to or lv.reply_to, limit)
            if self.options.reaper_feedback is not None:
                self._send_reaper(track, params, self.options.reaper_feedback)

    def _send_reaper(self, track: int, params: dict, to: Address) -> None:
        number = track + self.options.reaper_track_offset
        gain_db, pan = params.get("gain_db"), params.get("pan")
        if isinstance(gain_db, (int, float)) and math.isfinite(gain_db):
            self.send(A.reaper_address("/track/@/volume/db", number), [float(gain_db)], to)
        if isinstance(pan, (int, float)) and math.isfinite(pan):
            pan_norm = min(1.0, max(0.0, 0.5 * (float(pan) + 1.0)))
            self.send(A.reaper_address("/track/@/pan", number), [pan_norm], to)

    # ------------------------------------------------------------ queries

    def _query_latency(self, req: LatencyQuery) -> None:
        lv = self._live_or_report(req.session, "/fxmix/query/latency")
        if lv is not None:
            self.send("/fxmix/latency", [req.session, int(lv.session.latency_samples)], req.sender, req.limit)

    def _query_state(self, req: StateQuery) -> None:
        lv = self._live_or_report(req.session, "/fxmix/query/state")
        if lv is None:
            return
        state = {
            "session": req.session,
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
        self.send("/fxmix/state", [req.session, to_json(state)], req.sender, req.limit)

    def _query_stats(self, req: StatsQuery) -> None:
        if req.session != -1 and self._live_or_report(req.session, "/fxmix/query/stats") is None:
            return
        self.send("/fxmix/stats", [req.session, to_json(self.stats(req.session))], req.sender, req.limit)

    def _query_params(self, req: ParamsQuery) -> None:
        lv = self._live_or_report(req.session, "/fxmix/query/params")
        if lv is not None:
            self._push_params(req.session, lv, to=req.sender, limit=req.limit)

    def stats(self, session: int = -1) -> dict[str, Any]:
        """Server counters, and the session's block and engine statistics when ``session`` >= 0."""
        out: dict[str, Any] = {
            "server": {
                **dict(self.counters),
                "queue_depth": self.inbox.qsize(),
                "sessions": sorted(self.live),
                "opening": sorted(self.opening),
                "skipped_blocks": self.skipped_total,
                "python_osc_errors": PYTHON_OSC_ERRORS.snapshot(),  # process-wide
                "scheduling": dict(self.scheduling),
            },
            "errors": self.errors.snapshot(),
        }
        lv = self.live.get(session)
        if lv is not None:
            out["session"] = {
                **lv.config.assembler.stats.__dict__,
                "process_ms_mean": 1000.0 * lv.process_s_total / max(1, lv.mixed),
                "engine_mixed_blocks": lv.mixed,
                "process_ms_max": 1000.0 * lv.process_s_max,
                "skipped_blocks": lv.skipped_blocks,
                **turnaround_ms(lv.turnaround_s),
                "engine": lv.session.stats(),
            }
        return out


def turnaround_ms(samples: deque) -> dict[str, float | None]:
    """p50/p99/max (ms) of a session's block turnarounds (the block complete on the receive thread -> its mix
    sent): the server's share of a round trip, the rest being the sockets and the receive thread's wake-up."""
    if not samples:
        return {"turnaround_ms_p50": None, "turnaround_ms_p99": None, "turnaround_ms_max": None}
    ms = 1000.0 * np.asarray(samples)
    p50, p99 = np.percentile(ms, (50, 99))
    return {"turnaround_ms_p50": float(p50), "turnaround_ms_p99": float(p99), "turnaround_ms_max": float(ms.max())}
