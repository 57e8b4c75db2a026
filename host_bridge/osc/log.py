"""Problem counting for the bridge: every kind of bad input is counted and logged as one clear line, at most
once per interval per kind (:class:`ErrorLog`), and python-osc's own unthrottled parse noise is filtered."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

log = logging.getLogger("fxmix.bridge")

#: Human label of each counted problem kind (the log line starts with it).
ERROR_KINDS: dict[str, str] = {
    "not_osc": "datagram is not OSC (no '/' address or '#bundle' header)",
    "parse": "malformed or truncated OSC packet",
    "unknown_address": "unknown OSC address",
    "bad_types": "wrong OSC argument types",
    "bad_element": "bundle element that is neither a message nor a bundle (ignored)",
    "bad_value": "argument out of range",
    "unknown_session": "message for a session that is not open",
    "blob_size": "wrong audio blob size",
    "non_finite": "NaN/inf samples in a block (block zeroed)",
    "clipped": "samples beyond +-1000 (+60 dBFS) in a block (clipped)",
    "bad_cookie": "/fxmix/open with a cookie this server did not give that address (a new one was sent)",
    "late": "late block, its sequence number was already released for mixing (dropped)",
    "duplicate": "duplicate block (dropped)",
    "missing": "missing track block (zero-filled)",
    "seq_jump": "sequence number jumped too far ahead, or back by more than the reorder window (stream "
    "resynchronised there)",
    "queue_full": "processing queue full, message dropped (server overloaded or flooded)",
    "denied": "sender not in the allowlist (--allow)",
    "not_owner": "request for a session another sender opened (refused; --shared-control allows it)",
    "opening": "block for a session that is still opening, beyond what is held for it (dropped)",
    "reply_capped": "reply larger than the request of an unverified sender (not sent)",
    "engine": "engine rejected a request",
    "send": "could not send a reply",
    "recv": "could not read from the socket",
    "overload": "server behind real time, block skipped (engine slower than the block rate)",
}


#: python-osc modules that log bad input on the root logger, unthrottled and in full (a 60-KB bundle element
#: becomes a 240-KB line).
_PYTHON_OSC_MODULES = frozenset({"osc_message", "osc_bundle", "osc_packet", "osc_types"})


class _PythonOscParseNoise(logging.Filter):
    """Takes python-osc's own root-logger lines about bad input off the root logger and counts them on the
    rate-limited path instead: an unknown type tag (``Unhandled parameter type``; the message then fails our
    type check as ``bad_types``) and a bundle element that is neither a message nor a bundle
    (``bad_element``, counted in :data:`PYTHON_OSC_ERRORS`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.module not in _PYTHON_OSC_MODULES or "pythonosc" not in record.pathname:
            return True
        text = record.msg if isinstance(record.msg, str) else str(record.msg)
        if not text.startswith("Unhandled parameter type"):
            PYTHON_OSC_ERRORS.report("bad_element", text[:120])
        return False


def install_python_osc_filter() -> None:
    """Add the python-osc noise filter to the root logger (once)."""
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


#: What python-osc itself complained about (its lines are taken off the root logger by the filter above);
#: reported with the server's own counts in ``/fxmix/query/stats``.
PYTHON_OSC_ERRORS = ErrorLog()
