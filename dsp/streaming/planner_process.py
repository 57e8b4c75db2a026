"""A planner process for realtime sessions: the normalizers' plan jobs run outside the audio process's GIL.

A plan job (:class:`fxmix.dsp.streaming.planner.Planner`) is mostly Python and numpy code. On a planner *thread* it
holds the GIL for milliseconds at a time and the audio thread waits: the p99 block time of ``fxmix bench
stream`` doubled. Here the jobs run in one child process (``python -m fxmix.dsp.streaming.planner_process``,
started once per interpreter and shared by all realtime sessions), at a lower scheduling priority, resting
after each job so it uses at most ``duty`` of a core.

Protocol: length-prefixed frames over two private pipes, no pickles: a JSON header plus the raw bytes of the
numpy arrays it refers to (:func:`encode` / :func:`decode`). Only plain values, arrays, tuples and an
allowlist of fxmix's own parameter dataclasses are decoded; anything else is refused. Parent -> child
``{key, planner, snap, rest}``; child -> parent ``{key, ok, value}`` (an error travels as its type name and
message and is raised again as the matching fxmix error).
The child says ``"ready"`` once its imports are done, so a session pays the start-up (about a second) when it
opens, not on the audio path. The analysis windows of a snapshot travel through shared memory
(``Windows(shared=True)``), so a snapshot frame carries only small arrays.

If the child dies, every job in flight fails with :class:`PlannerDied`; :class:`ProcessPlanner` then starts a
new child (off the audio thread) and runs each failed job again, once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import queue
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait

import numpy as np

from .. import errors
from ..params import CompressorParams, EqParams, LoudnessParams, PanParams
from ..profile import ClassTargets
from .planner import Applied, Planner
from .windows import Windows

log = logging.getLogger("fxmix.engine")

_HEADER = struct.Struct("<QI")  # frame length, JSON header length
#: Largest frame accepted (bytes): snapshots and plans are a few hundred kB (the analysis windows travel
#: through shared memory), so a larger length prefix means a garbled stream, not a frame to allocate.
MAX_FRAME_BYTES = 1 << 30
#: Seconds a new planner process may take to import fxmix and say it is ready.
START_TIMEOUT_S = 60.0
#: Longest wait for a closing session's planner jobs (s).
SHUTDOWN_WAIT_S = 2.0


class PlannerDied(RuntimeError):
    """The planner process exited (or could not start); the message says why."""


class FrameError(ValueError):
    """A planner frame that is truncated, garbled, or names a type outside the allowlist."""


def _read_exact(fd: int, n: int) -> bytearray | None:
    """Exactly ``n`` bytes from ``fd`` into a new (writable) buffer; None at end of file before the first
    byte. Raises FrameError when the file ends after some of them (a truncated frame)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if not k:
            if got:
                raise FrameError(f"planner frame: the stream ended after {got} of {n} bytes (truncated frame)")
            return None
        got += k
    return buf


#: Name -> type of every dataclass and error a frame may carry (nothing else is ever built from a frame).
_ALLOWED_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (
        EqParams,
        CompressorParams,
        PanParams,
        LoudnessParams,
        ClassTargets,
        Applied,
        errors.FxmixError,
        errors.AudioInputError,
        errors.ConfigError,
        errors.ModelLoadError,
        PlannerDied,
    )
}


def _check_lengths(total: int, n_header: int) -> None:
    if total > MAX_FRAME_BYTES or n_header > total:
        raise FrameError(
            f"planner frame: length prefix ({total} bytes, header {n_header}) is impossible (garbled frame)"
        )


def encode(obj) -> bytes:
    """One frame: header lengths, a JSON description of ``obj`` and the raw bytes of its arrays."""
    buffers: list[bytes] = []
    offset = 0

    def enc(v):
        nonlocal offset
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v)
        if isinstance(v, np.ndarray):
            a = np.ascontiguousarray(v)
            buffers.append(a.tobytes())
            # the shape of v, not a's: ascontiguousarray makes a 0-d array 1-d
            ref = {"__nd__": [offset, a.nbytes], "dtype": a.dtype.str, "shape": list(v.shape)}
            offset += a.nbytes
            return ref
        if isinstance(v, tuple):
            if len(v) > 4 and all(type(x) is float for x in v):  # parameter curves: one array, not N floats
                return {"__ftuple__": enc(np.asarray(v, np.float64))}
            return {"__tuple__": [enc(x) for x in v]}
        if isinstance(v, list):
            return [enc(x) for x in v]
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError("planner frame: dict keys must be strings")
            return {"__dict__": {k: enc(x) for k, x in v.items()}}
        if isinstance(v, Planner):
            return {"__planner__": enc(v.spec())}
        if isinstance(v, Windows):
            return {"__windows__": v.ref()}
        if isinstance(v, BaseException):
            known = type(v).__name__ in _ALLOWED_TYPES
            return {
                "__error__": type(v).__name__ if known else "FxmixError",
                # an error type outside the allowlist arrives as an FxmixError that names it
                "message": str(v) if known else f"{type(v).__name__}: {v}",
            }
        if dataclasses.is_dataclass(v) and type(v).__name__ in _ALLOWED_TYPES:
            return {
                "__dc__": type(v).__name__,
                "fields": {f.name: enc(getattr(v, f.name)) for f in dataclasses.fields(v)},
            }
        raise TypeError(f"planner frame: cannot send a {type(v).__name__}")

    header = json.dumps(enc(obj), separators=(",", ":")).encode("utf-8")
    body = b"".join(buffers)
    return _HEADER.pack(len(header) + len(body), len(header)) + header + body


def _array(ref: dict, body: bytearray) -> np.ndarray:
    """The array an ``__nd__`` reference describes: a writable view of its bytes in ``body``."""
    try:
        start, n = (int(x) for x in ref["__nd__"])
        dtype = np.dtype(ref["dtype"])
        shape = tuple(int(d) for d in ref["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FrameError(f"planner frame: bad array reference {ref!r} ({exc})") from exc
    if dtype.hasobject:
        raise FrameError(f"planner frame: refusing an array of Python objects ({dtype})")
    if start < 0 or n < 0 or start + n > len(body):
        raise FrameError(
            f"planner frame: array bytes [{start}, {start + n}) lie outside the {len(body)}-byte body "
            "(truncated frame)"
        )
    count = n // dtype.itemsize if dtype.itemsize else 0
    if count * dtype.itemsize != n or math.prod(shape) != count:
        raise FrameError(f"planner frame: {n} bytes of {dtype} do not make an array of shape {shape}")
    return np.frombuffer(body, dtype, count, start).reshape(shape)


def decode(header: bytes, body: bytearray):
    """Inverse of :func:`encode` (arrays are writable views of ``body``, a bytearray).

    Raises:
        FrameError: a garbled header, array bytes outside ``body`` (truncated), or an object outside the
            allowlist.
    """
    types = _ALLOWED_TYPES

    def dec(v):
        if isinstance(v, list):
            return [dec(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "__nd__" in v:
            return _array(v, body)
        if "__ftuple__" in v:
            return tuple(dec(v["__ftuple__"]).tolist())
        if "__tuple__" in v:
            return tuple(dec(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {k: dec(x) for k, x in v["__dict__"].items()}
        if "__planner__" in v:
            return Planner(**dec(v["__planner__"]))
        if "__windows__" in v:
            return Windows.attach(v["__windows__"])
        if "__error__" in v:
            return types.get(v["__error__"], RuntimeError)(v["message"])
        if "__dc__" in v and v["__dc__"] in types:
            return types[v["__dc__"]](**{k: dec(x) for k, x in v["fields"].items()})
        raise FrameError(f"planner frame: unknown object {sorted(v)[:3]}")

    try:
        tree = json.loads(header.decode("utf-8"))
    except ValueError as exc:  # also UnicodeDecodeError
        raise FrameError(f"planner frame: the header is not UTF-8 JSON ({exc}); garbled frame") from exc
    try:
        return dec(tree)
    except (KeyError, TypeError, AttributeError) as exc:  # well-formed JSON of the wrong shape
        raise FrameError(f"planner frame: malformed ({type(exc).__name__}: {exc})") from exc


def split_frame(frame: bytes) -> tuple[bytes, bytearray]:
    """(JSON header, array bytes) of one whole frame as :func:`encode` makes it.

    Raises:
        FrameError: the frame is shorter or longer than its length prefix says, or the prefix is impossible.
    """
    if len(frame) < _HEADER.size:
        raise FrameError(
            f"planner frame: {len(frame)} bytes, less than the {_HEADER.size}-byte length prefix (truncated frame)"
        )
    total, n_header = _HEADER.unpack_from(frame)
    _check_lengths(total, n_header)
    if len(frame) - _HEADER.size != total:
        raise FrameError(
            f"planner frame: the prefix announces {total} bytes but {len(frame) - _HEADER.size} follow "
            "(truncated or garbled frame)"
        )
    start = _HEADER.size + n_header
    return bytes(frame[_HEADER.size : start]), bytearray(frame[start:])


def decode_frame(frame: bytes):
    """Inverse of :func:`encode` for one whole frame (length prefix included); raises FrameError."""
    return decode(*split_frame(frame))


def _read_frame(fd: int) -> tuple[bytes, bytearray] | None:
    """(JSON header, array bytes) of the next frame; None at end of stream, FrameError inside a frame."""
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    total, n_header = _HEADER.unpack(head)
    _check_lengths(total, n_header)
    frame = _read_exact(fd, total)
    if frame is None:  # (a 0-byte read never ends the stream)
        raise FrameError(f"planner frame: the stream ended before a {total}-byte frame (truncated frame)")
    return bytes(frame[:n_header]), frame[n_header:]


def read_message(fd: int):
    """The next message on the pipe ``fd``, decoded; None at end of stream. Raises FrameError."""
    frame = _read_frame(fd)
    return None if frame is None else decode(*frame)


def _frame_key(header: bytes) -> int | None:
    """The job key of a request frame that could not be decoded (None if even that is unreadable)."""
    try:
        key = json.loads(header.decode("utf-8"))["__dict__"]["key"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return key if isinstance(key, int) else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def below_audio() -> None:
    """Run the planner only on CPU time nobody else wants: SCHED_IDLE where the OS has it (Linux; a waking
    audio thread preempts it at once, where a nice-10 process could hold a core for milliseconds), else
    nice 10. Neither needs privileges. Linux sets the policy per thread: every thread of the process gets it
    (the BLAS pools are limited to one thread by the parent, see ``_Child``)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except (OSError, ValueError):
        tids = [0]
    if hasattr(os, "SCHED_IDLE"):
        done = 0
        for tid in tids:
            try:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
                done += 1
            except OSError:  # that thread has exited meanwhile (or the call is refused)
                pass
        if done:
            return
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass


def child_main(read_fd: int, write_fd: int) -> None:
    """The planner process: run jobs until the parent closes its pipe."""
    # the jobs' code (Planner and the stages) came with this module's imports, before saying ready
    _write_all(write_fd, encode("ready"))
    below_audio()  # after the start-up handshake, which must not wait for idle CPU
    last_end, last_dur = 0.0, 0.0
    while True:
        try:
            frame = _read_frame(read_fd)
        except FrameError as exc:  # the request stream is out of step: nothing after it can be read
            log.warning("planner process: %s; stopping", exc)
            return
        if frame is None:
            return
        try:
            msg = decode(*frame)
        except Exception as exc:  # e.g. a closed session's shared windows are gone: that job fails, not us
            key = _frame_key(frame[0])
            if key is not None:
                err = RuntimeError(f"planner request: {type(exc).__name__}: {exc}")
                try:
                    _write_all(write_fd, encode({"key": key, "ok": False, "value": err}))
                except OSError:
                    return
            continue
        key, job, snap, rest = msg["key"], msg["planner"], msg["snap"], msg["rest"]
        wait = last_end + rest * last_dur - time.perf_counter()
        if wait > 0:
            time.sleep(min(1.0, wait))
        t0 = time.perf_counter()
        try:
            reply = {"key": key, "ok": True, "value": job(snap)}
        except Exception as exc:  # handed to the audio side, which re-raises it where it collects the plan
            reply = {"key": key, "ok": False, "value": exc}
        last_end = time.perf_counter()
        last_dur = last_end - t0
        try:
            data = encode(reply)
        except (TypeError, ValueError) as exc:  # a result this protocol cannot carry
            data = encode({"key": key, "ok": False, "value": RuntimeError(f"planner reply: {exc}")})
        try:
            _write_all(write_fd, data)
        except OSError:  # the parent has gone (its pipe is closed): nothing left to plan for
            return


def spawn_child(module: str, what: str) -> tuple[subprocess.Popen, int, int]:
    """Start ``python -m module READ_FD WRITE_FD`` with one BLAS/OpenMP thread (a single worker beside the
    audio threads); returns the process and this side's write and read ends of its two pipes.

    Raises:
        PlannerDied: the interpreter cannot be started (``what`` names the child in the message).
    """
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    cmd = [sys.executable, "-m", module, str(to_child_r), str(from_child_w)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        proc = subprocess.Popen(cmd, pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, env=env)
    except OSError as exc:
        for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
            os.close(fd)
        raise PlannerDied(f"cannot start {what} {sys.executable!r} ({exc})") from exc
    os.close(to_child_r)
    os.close(from_child_w)
    return proc, to_child_w, from_child_r


class _Child:
    """One running planner process and the futures of its jobs in flight."""

    def __init__(self) -> None:
        self.proc, self.wfd, self.rfd = spawn_child("fxmix.dsp.streaming.planner_process", "the planner process")
        self.pending: dict[int, Future] = {}
        self.lock = threading.Lock()
        self.alive = True
        self._next = 0
        self._out: queue.SimpleQueue = queue.SimpleQueue()
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), name="fxmix-plan-rx", daemon=True)
        self._writer = threading.Thread(target=self._write, name="fxmix-plan-tx", daemon=True)
        self._reader.start()
        self._writer.start()
        if not ready.wait(START_TIMEOUT_S) or not self.alive:
            self.kill()
            raise PlannerDied(
                f"the planner process ({sys.executable} -m fxmix.dsp.streaming.planner_process) did not start "
                f"within {START_TIMEOUT_S:g} s; its error output is above"
            )

    def submit(self, job, snap: dict, rest: float) -> Future:
        fut: Future = Future()
        fut.set_running_or_notify_cancel()
        with self.lock:
            if not self.alive:
                fut.set_exception(PlannerDied("the planner process has exited"))
                return fut
            key = self._next
            self._next += 1
            self.pending[key] = fut
        self._out.put(
            encode({"key": key, "planner": job, "snap": snap, "rest": rest})
        )  # written by the writer
        return fut

    def _write(self) -> None:
        while True:
            data = self._out.get()
            if data is None:
                break
            try:
                _write_all(self.wfd, data)
            except OSError:
                break
        try:
            os.close(self.wfd)
        except OSError:
            pass

    def _read(self, ready: threading.Event) -> None:
        try:
            if read_message(self.rfd) == "ready":
                ready.set()
                while True:
                    msg = read_message(self.rfd)
                    if msg is None:
                        break
                    key, ok, value = msg["key"], msg["ok"], msg["value"]
                    with self.lock:
                        fut = self.pending.pop(key, None)
                    if fut is not None:
                        fut.set_result(value) if ok else fut.set_exception(value)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("planner process: bad reply (%s)", exc)
        finally:
            with self.lock:
                self.alive = False
                failed, self.pending = list(self.pending.values()), {}
            code = self.proc.poll()
            for fut in failed:
                fut.set_exception(PlannerDied(f"the planner process exited (code {code})"))
            ready.set()
            os.close(self.rfd)

    def kill(self) -> None:
        self._out.put(None)
        if self.proc.poll() is None:
            self.proc.kill()


_CHILD: _Child | None = None
_CHILD_LOCK = threading.Lock()


def _child(dead: _Child | None = None) -> _Child:
    """The shared planner process, started on first use; ``dead``: replace it if it is still the current one."""
    global _CHILD
    with _CHILD_LOCK:
        if _CHILD is None or (dead is not None and _CHILD is dead) or not _CHILD.alive:
            if _CHILD is not None:
                log.warning("planner process died; starting a new one")
                _CHILD.kill()
            _CHILD = _Child()
        return _CHILD


def planner_cpu_seconds() -> float | None:
    """CPU seconds (user + system) the current planner process has used, from ``/proc`` (None elsewhere)."""
    child = _CHILD
    if child is None or not child.alive:
        return None
    try:
        with open(f"/proc/{child.proc.pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class ProcessPlanner:
    """An ``Executor``-like front (``submit(job, snapshot)``, ``shutdown``) on the shared planner process.

    Args:
        duty: the largest share of one core the planner may use (it rests ``1 / duty - 1`` × each job's time).

    Raises:
        PlannerDied: the process cannot be started (e.g. ``sys.executable`` is not a Python interpreter, as
            in some embedding hosts); callers fall back to a planner thread.
    """

    #: the normalizer then keeps its analysis windows in shared memory
    separate_process = True

    def __init__(self, duty: float):
        self.rest = 1.0 / float(duty) - 1.0
        self._futures: set[Future] = set()
        _child()

    def submit(self, job, snap: dict) -> Future:
        outer: Future = Future()
        outer.set_running_or_notify_cancel()
        self._futures.add(outer)
        outer.add_done_callback(self._futures.discard)
        self._run(outer, job, snap, retries=1)
        return outer

    def _run(self, outer: Future, job, snap: dict, retries: int) -> None:
        child = _CHILD if _CHILD is not None else _child()

        def done(f: Future) -> None:
            exc = f.exception()
            if isinstance(exc, PlannerDied) and retries > 0:
                # restart off the audio thread (this callback may run on it when the child was dead already)
                def again() -> None:
                    try:
                        _child(dead=child)
                    except PlannerDied as err:
                        outer.set_exception(err)
                        return
                    self._run(outer, job, snap, retries - 1)

                threading.Thread(target=again, name="fxmix-plan-restart", daemon=True).start()
            elif exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(f.result())

        child.submit(job, snap, self.rest).add_done_callback(done)

    def shutdown(self, wait: bool = True, timeout_s: float = SHUTDOWN_WAIT_S) -> None:
        """Wait for this session's jobs, at most ``timeout_s`` (the shared process keeps serving other
        sessions). A job still queued then (the planner only gets idle CPU, so on a saturated machine it can
        wait indefinitely) is abandoned: its result, or its error, is discarded."""
        if wait and self._futures:
            futures_wait(list(self._futures), timeout=timeout_s)


if __name__ == "__main__":
    child_main(int(sys.argv[1]), int(sys.argv[2]))
