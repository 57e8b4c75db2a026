"""The network's streaming step for a new block size, exported in a child process.

Exporting the ONNX step (:func:`fxmix.model.causal.streaming_onnx_bytes`) traces the network in Python for a
few hundred ms while holding the interpreter lock, so exporting it in the server's process stalls every live
session's worker for that long, whichever thread does it. :func:`ensure_step_graph` exports in a child
process instead (``python -m fxmix.host_bridge.step_builder``, kept for later block sizes; ``fxmix serve``
starts it at start-up, :func:`start_export_child`, so an open does not wait for it to import torch) and puts
the graph in the streaming runtime's cache; the opening thread only waits on the child, which releases the
lock. Block sizes already cached (``fxmix serve`` prebuilds the common ones at start) cost nothing.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fxmix.dsp.streaming.planner_process import below_audio
from fxmix.model import streaming_runtime
from fxmix.model.causal import CausalMixer, streaming_onnx_bytes
from fxmix.model.states import load_model, save_model

log = logging.getLogger("fxmix")

#: Longest wait for the child's export (s): it imports torch, loads the weights and traces the network.
EXPORT_TIMEOUT_S = 300.0


class _Exporter:
    """The export child: started on first use, then kept (torch imported, networks loaded) for later block
    sizes; one export at a time. Requests are lines ``WEIGHTS_DIR BLOCK OUT`` on its stdin, answers ``ok`` or
    ``error ...`` on its stdout; it exits when its stdin closes (this process ended)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="fxmix-step-")
        self.saved: dict[str, Path] = {}  # weights key -> the folder the child loads

    def export(self, net: CausalMixer, block_samples: int, timeout_s: float) -> bytes:
        key = streaming_runtime.weights_key(net)
        with self.lock:
            folder = self.saved.get(key)
            if folder is None:
                folder = self.saved[key] = Path(self.tmp.name) / f"net{len(self.saved)}"
                save_model(folder, net)
            self.start()
            out = Path(self.tmp.name) / f"step-{block_samples}.onnx"
            answer = self._ask(f"{folder}\t{int(block_samples)}\t{out}\n", timeout_s)
            if answer != "ok":
                raise RuntimeError(answer or "the export process ended")
            graph = out.read_bytes()
            out.unlink()
            return graph

    def start(self) -> None:
        """Start the child unless it runs (the caller holds :attr:`lock`, or nothing else uses it yet)."""
        if self.proc is None or self.proc.poll() is not None:
            cmd = [sys.executable, "-m", "fxmix.host_bridge.step_builder"]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )

    def _ask(self, line: str, timeout_s: float) -> str:
        proc = self.proc
        timer = threading.Timer(timeout_s, proc.kill)  # a hung export ends as "the export process ended"
        timer.start()
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
            return proc.stdout.readline().strip()  # the lock is released while this thread waits
        except OSError as exc:
            return f"error {exc}"
        finally:
            timer.cancel()


_EXPORTER: _Exporter | None = None
_EXPORTER_LOCK = threading.Lock()


def _exporter() -> _Exporter:
    global _EXPORTER
    with _EXPORTER_LOCK:
        if _EXPORTER is None:
            _EXPORTER = _Exporter()
        return _EXPORTER


def start_export_child() -> None:
    """Start the export child now (a server at start-up, while no session is live)."""
    exporter = _exporter()
    with exporter.lock:
        exporter.start()


def ensure_step_graph(net, block_samples: int, timeout_s: float = EXPORT_TIMEOUT_S) -> bool:
    """Make sure the step graph of ``net`` for ``block_samples`` is cached, exporting it in the export child
    when it is not. True when it is cached now; False for networks without a streaming export, or when the
    child failed (logged: the session then exports in-process, as before, and still opens)."""
    if not isinstance(net, CausalMixer):
        return False
    if streaming_runtime.is_step_cached(net, block_samples):
        return True
    t0 = time.perf_counter()
    try:
        graph = _exporter().export(net, block_samples, timeout_s)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning(
            "step export for %d-sample blocks in a child process failed (%s); exporting here",
            block_samples,
            exc,
        )
        return False
    streaming_runtime.put_step_graph(net, block_samples, graph)
    log.info(
        "step for %d-sample blocks exported in the export child in %.1f s",
        block_samples,
        time.perf_counter() - t0,
    )
    return True


def main() -> int:
    """Child side: export the step graph for every request line on stdin (see :class:`_Exporter`)."""
    import torch

    # only CPU time the live sessions do not want: the server's own process shares the machine with this one
    below_audio()
    torch.set_num_threads(1)
    nets: dict[str, CausalMixer] = {}
    for line in sys.stdin:
        try:
            weights, block, out = line.rstrip("\n").split("\t")
            if weights not in nets:
                nets[weights] = load_model(weights)[0]
            with torch.no_grad():
                Path(out).write_bytes(streaming_onnx_bytes(nets[weights], int(block)))
            answer = "ok"
        except Exception as exc:  # noqa: BLE001 - every failure is answered; the parent exports itself then
            answer = f"error {type(exc).__name__}: {exc}".replace("\n", " ")
        print(answer, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
