"""OSC encode/decode of the bridge: messages, audio blobs, argument type checks and the JSON of replies."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from pythonosc import osc_bundle, osc_message, osc_packet
from pythonosc.osc_message_builder import OscMessageBuilder

from . import addresses as A

#: What python-osc (and the struct/decode calls under it) raises on a malformed or truncated packet.
PARSE_ERRORS = (
    osc_packet.ParseError,
    osc_message.ParseError,
    osc_bundle.ParseError,
    ValueError,
    IndexError,
    TypeError,
    struct.error,
    UnicodeDecodeError,
    RecursionError,
    OverflowError,
)


def build_message(address: str, args: Sequence[Any], types: str | None = None) -> bytes:
    """Encode one OSC message. ``types`` (e.g. ``"iib"``) fixes the tags; None lets python-osc infer them."""
    b = OscMessageBuilder(address=address)
    for i, value in enumerate(args):
        tag = types[i] if types else None
        b.add_arg(value, tag) if tag else b.add_arg(value)
    return b.build().dgram


def encode_block(audio: np.ndarray) -> bytes:
    """(2, block_samples) float -> float32 LE channel-major blob bytes."""
    return np.ascontiguousarray(audio, dtype=A.BLOB_DTYPE).tobytes()


def decode_block(blob: bytes, block_samples: int) -> np.ndarray:
    """Blob bytes -> (2, block_samples) float32 (a copy). The caller checks the size first."""
    return np.frombuffer(blob, dtype=A.BLOB_DTYPE).reshape(2, block_samples).astype(np.float32)


def is_osc(data: bytes) -> bool:
    """Cheap header check: an OSC message (``/address``) or bundle (``#bundle``)."""
    return osc_message.OscMessage.dgram_is_message(data) or osc_bundle.OscBundle.dgram_is_bundle(data)


def parse_messages(data: bytes) -> list[osc_message.OscMessage]:
    """All messages of a datagram (bundles flattened, timetags ignored). Raises python-osc's ParseError
    (or one of the low-level errors listed in :data:`PARSE_ERRORS`) on malformed input."""
    return [tm.message for tm in osc_packet.OscPacket(data).messages]


#: Range of an OSC ``i`` argument (int32). An int64 (``h``) argument is accepted where it fits.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def check_types(types: str, args: Sequence[Any]) -> list[Any] | None:
    """Return ``args`` converted to the route's types, or None when they do not match.

    ``i`` needs an int (not a bool) within int32 (an int64 ``h`` value that fits is fine), ``f`` an int or
    float (converted to float), ``s`` a str, ``b`` bytes.
    """
    if len(args) != len(types):
        return None
    out: list[Any] = []
    for tag, value in zip(types, args):
        if tag == "i" and isinstance(value, int) and not isinstance(value, bool):
            if not INT32_MIN <= value <= INT32_MAX:
                return None
            out.append(int(value))
        elif tag == "f" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
        elif tag == "s" and isinstance(value, str):
            out.append(value)
        elif tag == "b" and isinstance(value, (bytes, bytearray)):
            out.append(bytes(value))
        else:
            return None
    return out


def type_name(value: Any) -> str:
    """OSC-ish name of an argument's type, for the ``bad_types`` line and reply."""
    if type(value) is int and not INT32_MIN <= value <= INT32_MAX:
        return "int64 (out of int32 range)"
    return {bool: "bool", int: "int", float: "float", str: "string", bytes: "blob"}.get(
        type(value), type(value).__name__
    )


#: OSC type tag -> the name used in error replies.
TAG_NAMES = {"i": "int32", "f": "float32", "s": "string", "b": "blob"}


def expected_types(route: A.Route) -> str:
    """``session:int32, name:string, ...``: what a route wants, for the ``/fxmix/error`` reply."""
    return ", ".join(f"{n}:{TAG_NAMES.get(t, t)}" for n, t in zip(route.args, route.types))


def _plain(value: Any) -> Any:
    """A JSON-ready copy of ``value``: numpy values as Python ones, non-finite floats as None, objects with
    ``to_dict`` as their dict, anything else unknown as its ``str``. Strings are never touched."""
    if isinstance(value, str) or value is None or isinstance(value, int):  # (bool is an int)
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {(k.item() if isinstance(k, np.generic) else k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    return str(value)


def to_json(obj: Any) -> str:
    """Compact JSON of engine dicts (numpy values converted; non-finite floats become null, wherever they
    are; strings such as a track named "Infinity pad" are kept as they are)."""
    return json.dumps(_plain(obj), separators=(",", ":"), allow_nan=False)
