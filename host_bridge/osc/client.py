"""OSC client of the fxmix bridge: streams multitrack blocks to ``fxmix serve`` and collects the mix.

Usable from tests, scripts and Python-capable DAWs (:class:`BridgeClient`, :func:`stream_mix`), by
``fxmix client`` (WAV stems in, mix WAV out) and by the bench load generator (:mod:`fxmix.bench.bridge_client`).

One UDP datagram per track block (``/fxmix/block``); see :mod:`fxmix.host_bridge.osc.addresses`.
"""

from __future__ import annotations

import json
import math
import platform
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...dsp.errors import FxmixError
from . import addresses as A
from .codec import (
    MIX_AUDIO_OFFSET,
    PARSE_ERRORS,
    build_message,
    encode_track_block,
    mix_header,
    parse_messages,
)

#: Linux's SO_TIMESTAMPNS (asm-generic value; Python does not name it): the kernel stamps each datagram with its
#: arrival time, so a reply's time does not include the receive thread's wake-up. None where it is not known.
_SO_TIMESTAMPNS = (
    35 if sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64", "i686", "armv7l", "riscv64") else None
)
_STAMP = struct.Struct("@qq")  # struct timespec: seconds, nanoseconds


def _enable_stamps(sock: socket.socket) -> bool:
    if _SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


@dataclass
class StreamReport:
    """What happened while streaming: counts (multitrack blocks) and round-trip times (ms)."""

    blocks_sent: int = 0
    blocks_received: int = 0
    blocks_lost: int = 0
    latency_samples: int = 0
    rtt_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.rtt_ms, q)) if self.rtt_ms else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks_sent": self.blocks_sent,
            "blocks_received": self.blocks_received,
            "blocks_lost": self.blocks_lost,
            "latency_samples": self.latency_samples,
            "rtt_p50_ms": self.percentile_ms(50),
            "rtt_p99_ms": self.percentile_ms(99),
            "rtt_max_ms": max(self.rtt_ms) if self.rtt_ms else float("nan"),
            "wall_s": self.wall_s,
        }


class BridgeClient:
    """A UDP OSC client for one fxmix session; replies are collected on a background thread.

    Args:
        host, port: the server.
        session: session number used in every message.
        bind_host: local interface for the reply socket (an ephemeral port).
        rcvbuf_bytes: SO_RCVBUF request for the reply socket.

    Use as a context manager, or call :meth:`close_socket` when done.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = A.DEFAULT_PORT,
        *,
        session: int = 0,
        bind_host: str = "127.0.0.1",
        rcvbuf_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.server = (host, int(port))
        self.session = int(session)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf_bytes)
        self.sock.bind((bind_host, 0))
        self.sock.settimeout(0.05)
        #: reply times are the kernel's arrival stamps (Linux), not when the receive thread got to them
        self.kernel_stamps = _enable_stamps(self.sock)
        #: mixed block -> when the receive thread read it (perf_counter); ``mixes`` holds its arrival time
        self.mix_read_t: dict[int, float] = {}
        self.block_samples = 0
        self.n_tracks = 0
        self.latency_samples = 0
        self.mixes: dict[int, tuple[np.ndarray, float]] = {}
        self.replies: deque[tuple[str, list[Any]]] = deque(maxlen=10000)
        self.bad_replies = 0
        #: the server's open cookie for this socket's address (``/fxmix/cookie``), sent with later opens
        self.cookie = ""
        self._cond = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._recv_loop, name="fxmix-client-recv", daemon=True)
        self._thread.start()

    @property
    def local_address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    # ------------------------------------------------------------ receiving

    def _recv_loop(self) -> None:
        while self._running:
            try:
                data, t, t_read = self._receive()
            except TimeoutError:
                continue
            except OSError:  # closed by close_socket(), or an ICMP error reported on the socket
                if not self._running:
                    return
                continue
            header = mix_header(data)
            if header is not None:  # a mixed block: no parse objects
                audio = np.frombuffer(data, A.BLOB_DTYPE, offset=MIX_AUDIO_OFFSET).astype(np.float32)
                if audio.size % 2 == 0:
                    with self._cond:
                        self.mixes[header[1]] = (audio.reshape(2, -1), t)
                        self.mix_read_t[header[1]] = t_read
                        self._cond.notify_all()
                continue
            try:
                messages = parse_messages(data)
            except PARSE_ERRORS:
                self.bad_replies += 1
                continue
            with self._cond:
                for m in messages:
                    params = list(m.params)
                    if m.address == "/fxmix/mix" and len(params) == 3 and isinstance(params[2], bytes):
                        audio = np.frombuffer(params[2], A.BLOB_DTYPE).astype(np.float32)
                        if audio.size % 2 == 0:
                            self.mixes[int(params[1])] = (audio.reshape(2, -1), t)
                    else:
                        self.replies.append((m.address, params))
                self._cond.notify_all()

    def _receive(self) -> tuple[bytes, float, float]:
        """One datagram, when it arrived (perf_counter; the kernel's stamp where there is one) and when it was
        read (perf_counter)."""
        if not self.kernel_stamps:
            data, _ = self.sock.recvfrom(65535)
            t = time.perf_counter()
            return data, t, t
        data, ancillary, _, _ = self.sock.recvmsg(65535, socket.CMSG_SPACE(_STAMP.size))
        t_read, now_ns = time.perf_counter(), time.time_ns()
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(raw) >= _STAMP.size:
                sec, nsec = _STAMP.unpack_from(raw)
                return data, t_read - max(0, now_ns - (sec * 1_000_000_000 + nsec)) / 1e9, t_read
        return data, t_read, t_read

    def wait_reply(self, address: str, timeout_s: float = 5.0) -> list[Any] | None:
        """Pop and return the args of the first reply with ``address`` (or ``/fxmix/error``: raises)."""
        got = self.wait_any((address,), timeout_s)
        return None if got is None else got[1]

    def wait_any(self, addresses: tuple[str, ...], timeout_s: float = 5.0) -> tuple[str, list[Any]] | None:
        """Pop and return ``(address, args)`` of the first reply with one of ``addresses`` (an ``/fxmix/error``
        for this session raises)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for i, (addr, params) in enumerate(self.replies):
                    if addr in addresses:
                        del self.replies[i]
                        return addr, params
                    if addr == "/fxmix/error" and params and params[0] == self.session:
                        del self.replies[i]
                        raise FxmixError(f"fxmix server {self.server[0]}:{self.server[1]}: {params[1]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def wait_mix(self, seq: int, timeout_s: float) -> bool:
        """Wait until mixed block ``seq`` has arrived; True if it did."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while seq not in self.mixes:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # ------------------------------------------------------------ sending

    def send(self, address: str, *args: Any) -> None:
        route = A.INBOUND.get(address)
        self.sock.sendto(build_message(address, args, route.types if route else None), self.server)

    def open(self, sample_rate: int, block_samples: int, n_tracks: int, timeout_s: float = 30.0) -> int:
        """Open the session; return its latency (samples). Raises FxmixError if the server refuses or
        does not answer.

        One round trip on loopback, or with the cookie of an earlier open; otherwise the server first answers
        ``/fxmix/cookie`` (proof that this address receives its replies) and the open is sent again with it."""
        deadline = time.monotonic() + timeout_s
        reply = None
        for _attempt in range(3):  # a cookie that expired in flight gets a fresh one
            args = (self.session, sample_rate, block_samples, n_tracks) + ((self.cookie,) if self.cookie else ())
            self.send("/fxmix/open", *args)
            got = self.wait_any(("/fxmix/opened", "/fxmix/cookie"), max(0.0, deadline - time.monotonic()))
            if got is None or got[0] == "/fxmix/opened":
                reply = None if got is None else got[1]
                break
            self.cookie = str(got[1][1])
        if reply is None:
            raise FxmixError(
                f"no answer from an fxmix server at {self.server[0]}:{self.server[1]} within {timeout_s:.0f} s; "
                "start it with `fxmix serve --port PORT`"
            )
        self.block_samples, self.n_tracks = int(block_samples), int(n_tracks)
        self.latency_samples = int(reply[1])
        with self._cond:
            self.mixes.clear()
            self.mix_read_t.clear()
        return self.latency_samples

    def set_track(self, track: int, class_name: str = "", name: str = "") -> None:
        self.send("/fxmix/track", self.session, track, class_name, name)

    def send_block(self, seq: int, blocks: np.ndarray) -> float:
        """Send one multitrack block (n_tracks, 2, block_samples) as one datagram per track; return the
        time (perf_counter) the last track was handed to the socket.

        (Taken before that send, not after: on loopback the send wakes the server, which may run before this
        thread does again, and a time taken then would leave the server's reply time out of the round trip.)"""
        sendto, server, session = self.sock.sendto, self.server, self.session
        last = blocks.shape[0] - 1
        for track in range(last):
            sendto(encode_track_block(session, track, seq, blocks[track]), server)
        datagram = encode_track_block(session, last, seq, blocks[last])
        t = time.perf_counter()
        sendto(datagram, server)
        return t

    def control(self, name: str, value: float) -> None:
        self.send("/fxmix/control", self.session, name, float(value))

    def flush(self) -> None:
        self.send("/fxmix/flush", self.session)

    def reset(self) -> None:
        self.send("/fxmix/reset", self.session)
        with self._cond:
            self.mixes.clear()
            self.mix_read_t.clear()

    def close(self) -> None:
        self.send("/fxmix/close", self.session)

    def _query_json(self, what: str, timeout_s: float) -> dict[str, Any] | None:
        self.send(f"/fxmix/query/{what}", self.session)
        reply = self.wait_reply(f"/fxmix/{what}", timeout_s)
        return None if reply is None else json.loads(reply[1])

    def query_stats(self, timeout_s: float = 5.0) -> dict[str, Any] | None:
        return self._query_json("stats", timeout_s)

    def query_state(self, timeout_s: float = 5.0) -> dict[str, Any] | None:
        return self._query_json("state", timeout_s)

    def query_latency(self, timeout_s: float = 5.0) -> int | None:
        self.send("/fxmix/query/latency", self.session)
        reply = self.wait_reply("/fxmix/latency", timeout_s)
        return None if reply is None else int(reply[1])

    def ping(self, timeout_s: float = 2.0) -> bool:
        token = int(time.monotonic_ns() % 2**31)
        self.send("/fxmix/ping", token)
        reply = self.wait_reply("/fxmix/pong", timeout_s)
        return reply is not None and reply[0] == token

    def close_socket(self) -> None:
        self._running = False
        self._thread.join(1.0)
        self.sock.close()

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_socket()


def stream_mix(
    client: BridgeClient,
    stems: np.ndarray,
    sample_rate: int,
    *,
    realtime: bool = False,
    max_in_flight: int = 8,
    timeout_s: float = 2.0,
    compensate_latency: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, StreamReport]:
    """Stream ``stems`` through an opened session and return the mix.

    Args:
        client: a client whose session is open (:meth:`BridgeClient.open`), with tracks assigned.
        stems: (n_tracks, 2, n) float32.
        sample_rate: the session's rate (Hz), for real-time pacing.
        realtime: send one block per block period; otherwise as fast as the server answers, with at
            most ``max_in_flight`` blocks unanswered (UDP has no flow control of its own).
        timeout_s: how long to wait for a missing mixed block before counting it lost.
        compensate_latency: send ``latency_samples`` of extra silence and drop the first
            ``latency_samples`` of the result, so the mix lines up with the stems.

    Returns:
        (mix (2, n) float32, report). Lost blocks are silent in the mix.
    """
    n_tracks, _, n = stems.shape
    block = client.block_samples
    extra = client.latency_samples if compensate_latency else 0
    n_blocks = math.ceil((n + extra) / block)
    padded = np.zeros((n_tracks, 2, n_blocks * block), np.float32)
    padded[..., :n] = stems
    report = StreamReport(latency_samples=client.latency_samples)
    sent_t: dict[int, float] = {}
    period_s = block / sample_rate
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_blocks, unit="block", desc="streaming")
    t0 = time.perf_counter()
    for seq in range(n_blocks):
        if realtime:
            delay = t0 + seq * period_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        elif seq >= max_in_flight:
            client.wait_mix(seq - max_in_flight, timeout_s)
        sent_t[seq] = client.send_block(seq, padded[..., seq * block : (seq + 1) * block])
        report.blocks_sent += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    client.flush()  # releases a last block whose tracks were lost
    client.wait_mix(n_blocks - 1, timeout_s)
    deadline = time.monotonic() + timeout_s
    while len([s for s in sent_t if s in client.mixes]) < n_blocks and time.monotonic() < deadline:
        time.sleep(0.01)
    report.wall_s = time.perf_counter() - t0
    out = np.zeros((2, n_blocks * block), np.float32)
    for seq in range(n_blocks):
        got = client.mixes.get(seq)
        if got is None or got[0].shape != (2, block):
            report.blocks_lost += 1
            continue
        out[:, seq * block : (seq + 1) * block] = got[0]
        report.blocks_received += 1
        report.rtt_ms.append(1000.0 * (got[1] - sent_t[seq]))
    return out[:, extra : extra + n], report
