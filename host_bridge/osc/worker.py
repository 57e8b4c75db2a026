"""The bridge's worker thread: runs queued requests against engine sessions, in arrival order, so a session is
never used from two threads. One handler per request type (:attr:`Worker.handlers`)."""

from __future__ import annotations

import gc
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...dsp.errors import FxmixError
from . import addresses as A
from .codec import encode_block, to_json
from .inbox import Inbox
from .log import ErrorLog, log
from .requests import (
    Address,
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
)

#: ``factory(sample_rate, block_samples, n_tracks, profile) -> Session``
SessionFactory = Callable[[int, int, int, str | None], Any]
#: ``send(address, args, to)``: encode with the address table's types and send (errors counted, not raised).
Send = Callable[[str, Sequence[Any], Address], None]
#: ``reply_error(sender, session, message)``: the rate-limited ``/fxmix/error`` reply.
ReplyError = Callable[[Address, int, str], None]

#: After falling behind real time, the worker skips the engine until queued blocks are this fresh again (s).
CATCH_UP_S = 0.02


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


def close_engine(engine: Any) -> None:
    close = getattr(engine, "close", None)  # frees the engine's planning thread
    if close is not None:
        close()


class Worker:
    """Consumes the :class:`Inbox`; owns the engine sessions.

    Args:
        inbox: the requests and slots shared with the receive thread.
        errors: problem counters.
        counters: the server's message counters (reported by ``/fxmix/query/stats``).
        send: sends one reply.
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
    ) -> None:
        self.inbox = inbox
        self.errors = errors
        self.counters = counters
        self.send = send
        self.reply_error = reply_error
        self.session_factory = session_factory
        self.options = options
        self.live: dict[int, LiveSession] = {}
        self._behind = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
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
        }

    # ------------------------------------------------------------ thread

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="fxmix-bridge-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (pending requests are dropped) and close every session."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.inbox.clear()
        for lv in self.live.values():
            close_engine(lv.session)
        self.live.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            request = self.inbox.get(self._wait_s())
            try:
                if request is not None:
                    self.process(request)
                self._flush_stale()
            except Exception as exc:  # noqa: BLE001 - top-level guard: the worker must never die
                # Typed engine errors are handled per request; anything else is logged and counted here.
                what = request.kind if request is not None else "timer"
                self.errors.report("engine", f"{what}: {type(exc).__name__}: {exc}")
            finally:
                if request is not None:
                    self.inbox.task_done()

    def process(self, request: Request) -> None:
        """Run one request with its handler (worker thread; tests may call it directly)."""
        self.handlers[type(request)](request)

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
        return lv

    def _make_session(self, cfg: SlotConfig, profile: str | None) -> Any:
        return self.session_factory(cfg.sample_rate, cfg.block_samples, cfg.n_tracks, profile)

    def _engine_error(self, sender: Address, session: int, message: str) -> None:
        self.errors.report("engine", f"session {session} {message}")
        self.reply_error(sender, session, message)

    # ------------------------------------------------------------ session life

    def _open(self, req: OpenRequest) -> None:
        session, cfg, profile = req.session, req.slot, self.options.default_profile
        try:
            engine = self._make_session(cfg, profile)
        except (FxmixError, ValueError) as exc:
            self.inbox.drop_slot(session, cfg)
            previous = self.live.pop(session, None)
            if previous is not None:
                close_engine(previous.session)
            self._engine_error(req.sender, session, f"open failed: {exc}")
            return
        # move everything alive now (engine, network, libraries) out of the collector's generations: a full
        # collection over them costs ~0.1 s, which would land inside some later block's processing
        gc.collect()
        gc.freeze()
        reply_to = self.options.reply_to or req.sender
        previous = self.live.get(session)
        if previous is not None:
            close_engine(previous.session)
        self.live[session] = LiveSession(cfg, engine, reply_to, profile)
        log.info(
            "bridge: session %d open: %d Hz, %d-sample blocks, %d tracks, latency %d samples; replies to %s:%d",
            session, cfg.sample_rate, cfg.block_samples, cfg.n_tracks, int(engine.latency_samples), *reply_to,
        )  # fmt: skip
        self.send(
            "/fxmix/opened", [session, int(engine.latency_samples), cfg.block_samples, cfg.n_tracks], reply_to
        )

    def _close(self, req: CloseRequest) -> None:
        lv = self.live.pop(req.session, None)
        if lv is not None:
            close_engine(lv.session)
            log.info("bridge: session %d closed", req.session)

    def _profile(self, req: ProfileRequest) -> None:
        lv = self._live_or_report(req.session, "/fxmix/profile")
        if lv is None:
            return
        try:
            engine = self._make_session(lv.config, req.profile)
            for track, (class_name, name) in sorted(lv.tracks.items()):
                engine.set_track(track, class_name=class_name, name=name)
            for name, value in lv.controls.items():
                engine.set_control(name, value)
        except (FxmixError, ValueError, KeyError) as exc:
            self._engine_error(req.sender, req.session, f"/fxmix/profile {req.profile!r}: {exc}")
            return
        close_engine(lv.session)
        lv.session, lv.profile = engine, req.profile
        log.info("bridge: session %d now uses profile %s", req.session, req.profile)
        self.send("/fxmix/latency", [req.session, int(engine.latency_samples)], lv.reply_to)

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
        if self._behind:  # shed load: skip the engine until the queue is back under max_backlog_s
            lv.skipped_blocks += 1
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
            self.send("/fxmix/mix", [req.session, req.seq, encode_block(mix)], lv.reply_to)
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

    def _push_params(self, session: int, lv: LiveSession, to: Address | None = None) -> None:
        if hasattr(lv.session, "all_track_params"):
            every = lv.session.all_track_params()
        else:
            every = [lv.session.track_params(t) for t in range(lv.config.n_tracks)]
        for track, params in enumerate(every):
            self.send("/fxmix/params", [session, track, to_json(params)], to or lv.reply_to)
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
            self.send("/fxmix/latency", [req.session, int(lv.session.latency_samples)], req.sender)

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
        self.send("/fxmix/state", [req.session, to_json(state)], req.sender)

    def _query_stats(self, req: StatsQuery) -> None:
        if req.session != -1 and self._live_or_report(req.session, "/fxmix/query/stats") is None:
            return
        self.send("/fxmix/stats", [req.session, to_json(self.stats(req.session))], req.sender)

    def _query_params(self, req: ParamsQuery) -> None:
        lv = self._live_or_report(req.session, "/fxmix/query/params")
        if lv is not None:
            self._push_params(req.session, lv, to=req.sender)

    def stats(self, session: int = -1) -> dict[str, Any]:
        """Server counters, and the session's block and engine statistics when ``session`` >= 0."""
        out: dict[str, Any] = {
            "server": {
                **dict(self.counters),
                "queue_depth": self.inbox.qsize(),
                "sessions": sorted(self.live),
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
                "engine": lv.session.stats(),
            }
        return out
