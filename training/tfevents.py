"""A minimal TensorBoard event-file writer for scalars (no tensorboard/tensorflow dependency).

``tensorboard`` is not installed with fxmix, so ``torch.utils.tensorboard`` cannot be used. TensorBoard reads
``events.out.tfevents.*`` files: TFRecords (``uint64 length, uint32 masked crc32c(length), payload, uint32
masked crc32c(payload)``) whose payloads are ``Event`` protobufs. Scalars only need a handful of protobuf fields,
encoded here by hand:

* ``Event``: wall_time (1, double), step (2, int64), file_version (3, string), summary (5, message)
* ``Summary``: value (1, repeated message); ``Summary.Value``: tag (1, string), simple_value (2, float)

:func:`read_scalars` parses the same files back (used by the tests to check CRCs and values).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(num: int, payload: bytes) -> bytes:
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def _event(
    wall_time: float, step: int, *, file_version: str | None = None, summary: bytes | None = None
) -> bytes:
    out = _varint((1 << 3) | 1) + struct.pack("<d", wall_time)
    out += _varint((2 << 3) | 0) + _varint(int(step))
    if file_version is not None:
        out += _field_bytes(3, file_version.encode())
    if summary is not None:
        out += _field_bytes(5, summary)
    return out


def _scalar_summary(tag: str, value: float) -> bytes:
    val = _field_bytes(1, tag.encode()) + _varint((2 << 3) | 5) + struct.pack("<f", float(value))
    return _field_bytes(1, val)


class EventWriter:
    """Append scalars to ``<log_dir>/events.out.tfevents.<time>.<host>`` (TensorBoard format).

    Each call writes and flushes one record, so a killed run leaves a readable file.
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = (
            self.log_dir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        )
        self._fh = open(self.path, "ab")
        self._write(_event(time.time(), 0, file_version="brain.Event:2"))

    def _write(self, payload: bytes) -> None:
        header = struct.pack("<Q", len(payload))
        self._fh.write(header + struct.pack("<I", _masked_crc(header)) + payload)
        self._fh.write(struct.pack("<I", _masked_crc(payload)))
        self._fh.flush()

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._write(_event(time.time(), step, summary=_scalar_summary(tag, value)))

    def close(self) -> None:
        self._fh.close()


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _parse(buf: bytes) -> list[tuple[int, int, object]]:
    out, i = [], 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
        elif wire == 1:
            v, i = buf[i : i + 8], i + 8
        elif wire == 5:
            v, i = buf[i : i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((num, wire, v))
    return out


def read_scalars(path: str | os.PathLike) -> list[tuple[str, int, float]]:
    """``(tag, step, value)`` of every scalar in an event file; raises ValueError on a CRC mismatch."""
    data = Path(path).read_bytes()
    out, i = [], 0
    while i < len(data):
        header = data[i : i + 8]
        (n,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[i + 8 : i + 12])[0] != _masked_crc(header):
            raise ValueError(f"{path}: bad length CRC at byte {i}")
        payload = data[i + 12 : i + 12 + n]
        if struct.unpack("<I", data[i + 12 + n : i + 16 + n])[0] != _masked_crc(payload):
            raise ValueError(f"{path}: bad payload CRC at byte {i}")
        i += 16 + n
        fields = _parse(payload)
        step = next((v for num, _, v in fields if num == 2), 0)
        for num, _, summary in fields:
            if num != 5:
                continue
            for _, _, value in _parse(summary):
                vf = dict((k, v) for k, _, v in _parse(value))
                out.append((vf[1].decode(), int(step), struct.unpack("<f", vf[2])[0]))
    return out
