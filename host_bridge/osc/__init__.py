"""Real-time OSC bridge: DAW track blocks in over UDP, mixed blocks and parameters out.

Receive path (one thread, never blocks on processing)::

    datagram -> allowlist -> parse (python-osc) -> ROUTES[address] -> type check -> handler
             -> per-session BlockAssembler (reorder by sequence number, zero-fill missing tracks,
                drop duplicates/late blocks)
             -> bounded queue of typed requests (a complete block is one MixRequest) -> worker thread:
                one handler per request type, Session.process for a MixRequest
             -> /fxmix/mix to the session's reply address (+ periodic /fxmix/params, Reaper feedback)

Track blocks are assembled on the receive thread, so the worker wakes once per multitrack block, not
once per track datagram (that hand-over, 16 thread switches per block, was most of the receive cost).

Modules: :mod:`.addresses` (the address table), :mod:`.codec` (OSC and blob encoding, JSON replies),
:mod:`.assembler` (block reordering), :mod:`.log` (rate-limited problem counts), :mod:`.requests` (what the
receive thread hands the worker), :mod:`.inbox` (that hand-over: slots and the bounded queue under one lock),
:mod:`.core` (routes and validation), :mod:`.worker` (engine sessions), :mod:`.server` (UDP) and :mod:`.client`
(the other end; its bench load generator is :mod:`fxmix.bench.bridge_client`).

Everything that touches an engine ``Session`` runs on the worker thread, in arrival order, so a session is
never used from two threads. If the engine is slower than the block rate, blocks that waited more than
``max_backlog_s`` are not mixed (counted as ``overload``) until the worker has caught up, so latency stays
bounded instead of growing.

Bad input never crashes the server: each kind of problem (malformed packet, unknown address, wrong
types, wrong blob size, unknown session, late/duplicate/missing blocks, full queue, ...) is counted and
logged as one clear line, at most once per ``log_interval_s`` per kind (:class:`ErrorLog`).

streaming-safe: yes (the bridge adds no latency of its own beyond the reorder wait for missing blocks;
the mix carries the engine's ``latency_samples``).
"""

from __future__ import annotations

from . import addresses
from .assembler import AssemblerStats, BlockAssembler
from .client import BridgeClient, StreamReport, stream_mix
from .codec import (
    PARSE_ERRORS,
    build_message,
    check_types,
    decode_block,
    encode_block,
    parse_messages,
    to_json,
)
from .core import BUSY, BridgeCore
from .log import ERROR_KINDS, ErrorLog
from .requests import SlotConfig
from .server import BridgeServer, parse_allowlist
from .worker import CATCH_UP_S, SessionFactory

__all__ = [
    "BUSY", "CATCH_UP_S", "ERROR_KINDS", "PARSE_ERRORS", "AssemblerStats", "BlockAssembler", "BridgeClient",
    "BridgeCore", "BridgeServer", "ErrorLog", "SessionFactory", "SlotConfig", "StreamReport", "addresses",
    "build_message", "check_types", "decode_block", "encode_block", "parse_allowlist", "parse_messages",
    "stream_mix", "to_json",
]  # fmt: skip
