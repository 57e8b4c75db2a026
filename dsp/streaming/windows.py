"""Shared-memory analysis windows: the audio a compressor plan reads, handed to a planner process without
copies.

streaming-safe: n/a (allocated once per normalizer; the audio path only copies hops into it).
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

import numpy as np


class Windows:
    """The (3, 2, n) analysis windows a compressor plan reads (input, EQ output, stem output).

    ``shared=True`` backs them with a ``.npy`` file in shared memory (``/dev/shm`` where there is one): a
    planner process maps the same pages from :meth:`ref` (:meth:`attach`), so handing a snapshot to another
    process copies nothing on the audio side. The file is removed when the owner is collected (or ``close``).
    """

    def __init__(self, shape: tuple[int, ...], shared: bool = False):
        self.shape, self.path = tuple(shape), None
        if shared:
            base = "/dev/shm" if Path("/dev/shm").is_dir() else None
            fd, self.path = tempfile.mkstemp(prefix="fxmix-windows-", suffix=".npy", dir=base)
            os.close(fd)
            self.array = np.lib.format.open_memmap(self.path, "w+", np.float32, self.shape)
            self._finalizer = weakref.finalize(self, _unlink_quietly, self.path)
        else:
            self.array = np.zeros(self.shape, np.float32)
        self.array[...] = 0.0  # pages touched now, not on the audio path

    def close(self) -> None:
        if self.path is not None:
            self._finalizer()

    def ref(self) -> dict:
        """Where another process finds the shared windows (shared instances only)."""
        if self.path is None:
            raise ValueError("Windows.ref: these windows are not in shared memory")
        return {"path": self.path, "shape": list(self.shape)}

    @staticmethod
    def attach(ref: dict) -> Windows:
        """A read-only view of shared windows from :meth:`ref` (in the planner process; owns nothing)."""
        w = object.__new__(Windows)
        w.shape, w.path = tuple(ref["shape"]), None  # path None: closing this view removes nothing
        w.array = np.load(ref["path"], mmap_mode="r")
        return w


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

