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


def decode_block(blob: bytes, block_samples: int, offset: int = 0) -> np.ndarray:
    """Blob bytes (from ``offset``) -> (2, block_samples) float32: a read-only view of ``blob``, no copy (the
    assembler copies it into its block). The caller checks the size first."""
    return np.frombuffer(blob, A.BLOB_DTYPE, 2 * block_samples, offset).reshape(2, block_samples)


#: ``/fxmix/block`` and its type tags ``,iiib`` as OSC pads them: the prefix of every track-block datagram,
#: which the receive path parses without python-osc (:func:`block_header`).
BLOCK_PREFIX = b"/fxmix/block\x00\x00\x00\x00,iiib\x00\x00\x00"
_BLOCK_ARGS = struct.Struct(">iiii")  # session, track, seq, blob size
#: where a track block's samples start in its datagram
BLOCK_AUDIO_OFFSET = len(BLOCK_PREFIX) + _BLOCK_ARGS.size


#: ``/fxmix/mix`` and its type tags ``,iib``, padded: the prefix of every mixed block the server sends
_MIX_PREFIX = b"/fxmix/mix\x00\x00,iib\x00\x00\x00\x00"
_MIX_ARGS = struct.Struct(">iii")  # session, seq, blob size


def encode_mix(session: int, seq: int, audio: np.ndarray) -> bytes:
    """The ``/fxmix/mix session seq blob`` datagram of a (2, n) block, byte for byte what
    ``build_message("/fxmix/mix", [session, seq, encode_block(audio)], "iib")`` gives, in a twentieth of its
    time (the worker sends one per block, on the round trip)."""
    blob = encode_block(audio)
    return b"".join((_MIX_PREFIX, _MIX_ARGS.pack(session, seq, len(blob)), blob))


def mix_header(data: bytes) -> tuple[int, int] | None:
    """``(session, seq)`` of a well-formed ``/fxmix/mix`` datagram (samples from :data:`MIX_AUDIO_OFFSET` to
    the end), else None."""
    if not data.startswith(_MIX_PREFIX) or len(data) < MIX_AUDIO_OFFSET:
        return None
    session, seq, size = _MIX_ARGS.unpack_from(data, len(_MIX_PREFIX))
    return (session, seq) if size == len(data) - MIX_AUDIO_OFFSET else None


#: where a mixed block's samples start in its datagram
MIX_AUDIO_OFFSET = len(_MIX_PREFIX) + _MIX_ARGS.size


def encode_track_block(session: int, track: int, seq: int, audio: np.ndarray) -> bytes:
    """The ``/fxmix/block session track seq blob`` datagram of one track's (2, n) block (what
    ``build_message`` gives for it, without its per-argument work)."""
    blob = encode_block(audio)
    return b"".join((BLOCK_PREFIX, _BLOCK_ARGS.pack(session, track, seq, len(blob)), blob))


def block_header(data: bytes) -> tuple[int, int, int] | None:
    """``(session, track, seq)`` of a well-formed ``/fxmix/block`` datagram whose samples start at
    :data:`BLOCK_AUDIO_OFFSET` and fill the rest of it; None for anything else (parsed by python-osc then).
    A few byte compares and one unpack: the per-datagram cost of the audio path without any parse objects."""
    if not data.startswith(BLOCK_PREFIX) or len(data) < BLOCK_AUDIO_OFFSET:
        return None
    session, track, seq, size = _BLOCK_ARGS.unpack_from(data, len(BLOCK_PREFIX))
    return (session, track, seq) if size == len(data) - BLOCK_AUDIO_OFFSET else None


def is_osc(data: bytes) -> bool:
    """Cheap header check: an OSC message (``/address``) or bundle (``#bundle``)."""
    return osc_message.OscMessage.dgram_is_message(data) or osc_bundle.OscBundle.dgram_is_bundle(data)


def parse_messages(data: bytes) -> list[osc_message.OscMessage]:
    """All messages of a datagram (bundles flattened, timetags ignored). Raises python-osc's ParseError
    (or one of the low-level errors listed in :data:`PARSE_ERRORS`) on malformed input."""
    return [tm.message for tm in osc_packet.OscPacket(data).messages]


#: Range of an OSC ``i`` argument (int32). An int64 (``h``) argument is accepted where it fits.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def check_types(types: str, args: Sequence[Any], optional: int = 0) -> list[Any] | None:
    """Return ``args`` converted to the route's types, or None when they do not match.

    The last ``optional`` types may be left off. ``i`` needs an int (not a bool) within int32 (an int64 ``h`` value that fits is fine), ``f`` an int or
    float (converted to float), ``s`` a str, ``b`` bytes.
    """
    if not len(types) - optional <= len(args) <= len(types):
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
    """``session:int32, name:string, ...``: what a route wants, for the ``/fxmix/error`` reply (optional ones
    in brackets)."""
    first_optional = len(route.args) - route.optional
    return ", ".join(
        f"[{n}:{TAG_NAMES.get(t, t)}]" if i >= first_optional else f"{n}:{TAG_NAMES.get(t, t)}"
        for i, (n, t) in enumerate(zip(route.args, route.types))
    )


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
