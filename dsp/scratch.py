"""A stem's copy kept in an unlinked temporary file instead of memory.

The offline chain's EQ refinement replays the stages from the input after a first pass over it; where the
caller gave the input array up, the first pass works in that array and the input waits here, so each stem
at work takes one stem of memory instead of two. Writing and reading back a 3-minute stereo stem (64 MB)
costs tens of milliseconds (the page cache holds it), far less than the filtering around it.

Writing over a file's existing pages costs a fraction of extending a new file, so the stems of a song
pass their files on (:class:`ScratchPool`).

streaming-safe: not applicable (whole-stem copies).
"""

from __future__ import annotations

import logging
import tempfile
import threading

import numpy as np

log = logging.getLogger("fxmix.dsp")


class ScratchCopy:
    """One (channels, n) float32 array's bytes in an unlinked temporary file; the file goes with
    :meth:`close` (or the process)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="fxmix-stem-", buffering=0)
        self.shape: tuple[int, ...] | None = None

    @classmethod
    def of(cls, x: np.ndarray, copy: ScratchCopy | None = None) -> ScratchCopy | None:
        """A copy of ``x`` (C-contiguous float32) in ``copy``'s file or a new one; None, with a debug
        message, where the temporary folder cannot take it (the caller keeps a copy in memory instead)."""
        try:
            copy = copy or cls()
        except OSError as e:
            log.debug("no scratch file for a stem copy (%s); keeping it in memory", e)
            return None
        try:
            copy.save(x)
        except OSError as e:
            copy.close()
            log.debug("scratch file full (%s); keeping the stem copy in memory", e)
            return None
        return copy

    def save(self, x: np.ndarray) -> None:
        """Write ``x`` over the file's contents."""
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            raise ValueError("ScratchCopy holds C-contiguous float32 arrays")
        self._file.seek(0)
        view = memoryview(x).cast("B")
        done = 0
        while done < view.nbytes:
            done += self._file.write(view[done:])
        self.shape = x.shape

    def load(self, out: np.ndarray) -> np.ndarray:
        """Read the copy back into ``out`` (its shape, float32, C-contiguous); returns ``out``."""
        if out.shape != self.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"ScratchCopy holds a {self.shape} float32 array; got {out.shape} {out.dtype}")
        self._file.seek(0)
        view = memoryview(out).cast("B")
        done = 0
        while done < view.nbytes:
            got = self._file.readinto(view[done:])
            if not got:
                raise OSError(f"scratch file ended after {done} of {view.nbytes} bytes")
            done += got
        return out

    def close(self) -> None:
        self._file.close()


class ScratchPool:
    """Scratch files handed back as each stem finishes and written over by the next stem's copies;
    thread-safe. :meth:`close` deletes the files."""

    def __init__(self) -> None:
        self._free: list[ScratchCopy] = []
        self._lock = threading.Lock()

    def copy_of(self, x: np.ndarray) -> ScratchCopy | None:
        """A copy of ``x`` in a free file of the pool or a new one; None where none can be written."""
        with self._lock:
            copy = self._free.pop() if self._free else None
        return ScratchCopy.of(x, copy)

    def give_back(self, copy: ScratchCopy) -> None:
        with self._lock:
            self._free.append(copy)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for copy in free:
            copy.close()
