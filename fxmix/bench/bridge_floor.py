"""The floor of ``fxmix bench bridge --floor``: a plain UDP echo server in Python that answers the bench client
as the bridge would (``/fxmix/opened``, one ``/fxmix/mix`` of silence per block when its last track arrives) and
does nothing else. Measured with the same client at the same moment, its round trip is what the machine, the
sockets and a Python receive loop cost; the bridge's excess over it is the bridge's own."""

from __future__ import annotations

import socket
import threading

import numpy as np

from fxmix.host_bridge.osc.codec import (
    PARSE_ERRORS,
    block_header,
    build_message,
    encode_mix,
    parse_messages,
    to_json,
)
from fxmix.host_bridge.osc.priority import describe_thread, realtime_thread


class EchoFloor:
    """A loopback UDP echo of the bridge's block protocol on its own thread; use as a context manager.

    Args:
        realtime_priority: run the receive thread in SCHED_FIFO at this priority (as the bridge's), None: as is.
    """

    def __init__(self, realtime_priority: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()[:2]
        self.priority = realtime_priority
        self.scheduling = ""
        self._shape = (1, 2, 0)  # tracks, channels, samples
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="fxmix-echo-floor", daemon=True)

    def _loop(self) -> None:
        self.scheduling = describe_thread() if self.priority is None else realtime_thread(self.priority)
        silence = np.zeros((2, 0), np.float32)
        while self._running:
            try:
                data, sender = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            header = block_header(data)
            if header is None:
                self._control(data, sender)
                if silence.shape[1] != self._shape[2]:
                    silence = np.zeros(self._shape[1:], np.float32)
            elif header[1] == self._shape[0] - 1:  # the block's last track: answer with its (silent) mix
                self.sock.sendto(encode_mix(header[0], header[2], silence), sender)

    def _control(self, data: bytes, sender: tuple[str, int]) -> None:
        try:
            messages = parse_messages(data)
        except PARSE_ERRORS:
            return  # not the bench client's: ignored
        for m in messages:
            if m.address == "/fxmix/open":
                session, _, block_samples, n_tracks = m.params[:4]
                self._shape = (int(n_tracks), 2, int(block_samples))
                self.sock.sendto(build_message("/fxmix/opened", [session, 0, block_samples, n_tracks], "iiii"), sender)
            elif m.address == "/fxmix/query/stats":
                self.sock.sendto(build_message("/fxmix/stats", [m.params[0], to_json({})], "is"), sender)

    def __enter__(self) -> EchoFloor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join(1.0)
        self.sock.close()
