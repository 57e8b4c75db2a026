"""UDP transport of the bridge: python-osc's server for the socket set-up and the allowlist, and our own
receive loop that hands every datagram straight to :meth:`BridgeCore.handle_datagram`."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from pythonosc import osc_server
from pythonosc.dispatcher import Dispatcher

from ...dsp.errors import ConfigError
from . import addresses as A
from .core import BridgeCore
from .log import log
from .priority import describe_thread, realtime_thread
from .requests import Address
from .worker import SessionFactory


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


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        host: interface to bind (default loopback only). Any other interface needs ``allow``: a server open to
            everyone on the network is refused (ConfigError).
        port: UDP port (0: an ephemeral one, see :attr:`address`).
        allow: sender IPs/networks accepted (empty: loopback binds only).
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
        networks = parse_allowlist(allow)
        if not networks and not _is_loopback_host(host):
            raise ConfigError(
                f"--host {host} without --allow would serve every host that can reach port {port}; "
                "add --allow IP|CIDR ... (e.g. --allow 192.168.1.0/24) or bind 127.0.0.1"
            )
        self.core = BridgeCore(self._sendto, session_factory, **core_kwargs)
        try:
            self._server = _OSCServer((host, int(port)), self.core, networks, rcvbuf_bytes)
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
        priority = core.worker.options.realtime_priority
        core.worker.scheduling["receive"] = describe_thread() if priority is None else realtime_thread(priority)
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
