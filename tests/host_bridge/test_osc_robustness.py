"""The bridge under bad input, over real UDP: it keeps serving the valid session, counts every kind of
problem, logs one line per kind, and never crashes."""

from __future__ import annotations

import logging
import socket
import struct
import time

import numpy as np
from fxmix.host_bridge.osc.client import stream_mix
from fxmix.host_bridge.osc.codec import build_message, encode_block
from support import osc as S

GOOD_BLOCK = build_message("/fxmix/block", [0, 0, 0, encode_block(np.zeros((2, S.BLOCK)))], "iiib")


def _nested_bundle(depth: int) -> bytes:
    inner = build_message("/fxmix/ping", [1], "i")
    for _ in range(depth):
        inner = b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", len(inner)) + inner
    return inner


def _bad_datagrams() -> dict[str, list[bytes]]:
    """Bad input by the error kind the server must count it as."""
    rng = np.random.default_rng(7)
    nan_block = np.zeros((2, S.BLOCK), np.float32)
    nan_block[0, 3] = np.nan
    return {
        "not_osc": [
            b"",
            b"hello",
            rng.integers(0, 256, 60000, dtype=np.uint8).tobytes().replace(b"/", b"x").replace(b"#", b"x"),
        ],
        "parse": [
            b"/fxmix/block",  # no terminator, no type tags
            *(GOOD_BLOCK[:cut] for cut in (13, 17, 21, 30, 40, 1000, len(GOOD_BLOCK) - 1)),  # truncated
            b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 4000) + b"/x\x00\x00",  # content length lies
            _nested_bundle(3000),  # deeper than Python's recursion limit
            b"/fxmix/ping\x00,q\x00\x00\x00\x00\x00\x01",  # unknown type tag
        ],
        "unknown_address": [
            build_message("/fxmix/nope", [1]),
            build_message("/", []),
            build_message("/track/1/volume", [0.5]),
        ],
        "bad_types": [
            build_message("/fxmix/block", [0.0, 0, 0, encode_block(np.zeros((2, S.BLOCK)))]),  # float session
            build_message("/fxmix/block", [0, 0, "3", encode_block(np.zeros((2, S.BLOCK)))]),  # string seq
            build_message("/fxmix/block", [0, 0, 3, 17]),  # int instead of blob
            build_message("/fxmix/block", [0, 0, 3]),  # missing blob
            build_message("/fxmix/open", [0, S.SR, S.BLOCK, 4, 99]),  # extra argument
            build_message("/fxmix/control", [0, 1.0, "amount"]),  # swapped
        ],
        "blob_size": [
            build_message("/fxmix/block", [0, 1, 2, b"\x00\x00\x80?"], "iiib"),
            build_message("/fxmix/block", [0, 1, 2, bytes(2 * S.BLOCK * 4 - 4)], "iiib"),
            build_message("/fxmix/block", [0, 1, 2, bytes(2 * 2 * S.BLOCK * 4)], "iiib"),
        ],
        "unknown_session": [
            build_message("/fxmix/block", [42, 0, 0, encode_block(np.zeros((2, S.BLOCK)))], "iiib")
        ],
        "bad_value": [
            build_message("/fxmix/block", [0, 99, 0, encode_block(np.zeros((2, S.BLOCK)))], "iiib"),
            build_message("/fxmix/block", [0, 0, -5, encode_block(np.zeros((2, S.BLOCK)))], "iiib"),
            build_message("/fxmix/open", [3, 12, S.BLOCK, 4], "iiii"),
        ],
        # A NaN block for a sequence number far past the test stream: zeroed and counted, never mixed.
        "non_finite": [build_message("/fxmix/block", [0, 0, 10_000, encode_block(nan_block)], "iiib")],
    }


def test_bad_input_is_counted_logged_once_per_kind_and_the_session_keeps_serving(caplog):
    x = S.stems(1.0)
    blocks = S.blocks_of(x)
    ref = S.reference_mix(blocks)
    bad = _bad_datagrams()
    junk = [(kind, d) for kind, items in bad.items() for d in items if kind != "non_finite"]
    with caplog.at_level(logging.WARNING, logger="fxmix.bridge"):
        with S.running_server() as server, S.open_client(server) as client:
            raw = client.sock  # the session's owner sends the junk too (another sender would be refused)
            for seq, block in enumerate(blocks):
                for track in range(len(S.TRACKS)):
                    S.send_track_block(client, seq, track, block)
                    _kind, dgram = junk[(seq * len(S.TRACKS) + track) % len(junk)]
                    raw.sendto(dgram, server.address)
                time.sleep(0.001)
            for _kind, dgram in junk:  # every bad datagram at least once
                raw.sendto(dgram, server.address)
            mix = S.collect(client, len(blocks))
            # the bad requests were answered /fxmix/error (read before the later blocks were mixed)
            refusals = [p for a, p in client.replies if a == "/fxmix/error"]
            client.replies.clear()
            assert client.ping()
            stats = client.query_stats()
            errors_before_nan = dict(stats["errors"])
            client.sock.sendto(bad["non_finite"][0], server.address)
            client.flush()
            assert client.wait_mix(10_000, 5.0)
            assert np.isfinite(client.mixes[10_000][0]).all()  # the NaN block was zeroed before mixing
            final_errors = server.core.errors.snapshot()
    np.testing.assert_allclose(mix, ref, atol=1e-4, rtol=0)
    assert stats["session"]["zero_filled"] == 0 and stats["session"]["mixed_blocks"] == len(blocks)
    for kind in bad:
        if kind != "non_finite":
            assert errors_before_nan.get(kind, 0) >= len(bad[kind]), (kind, errors_before_nan)
    assert final_errors["non_finite"] == 1 and final_errors["seq_jump"] == 1
    # One clear line per kind of problem (the rate limit is 60 s here), each naming the kind.
    lines = [r.getMessage() for r in caplog.records if r.name == "fxmix.bridge"]
    assert not [r for r in caplog.records if r.name == "root"]  # python-osc's unthrottled lines are filtered
    assert len(lines) == len(final_errors)
    assert any("malformed or truncated OSC packet" in ln for ln in lines)
    assert any("wrong audio blob size" in ln and f"expected {2 * S.BLOCK * 4}" in ln for ln in lines)
    # wrong types are answered (rate-limited) naming the address and the expected types
    assert any(
        "/fxmix/block: wrong argument types" in m and "seq:int32, audio:blob" in m for _s, m in refusals
    )


def test_flood_does_not_stop_the_valid_session():
    x = S.stems(0.5)
    blocks = S.blocks_of(x)
    ref = S.reference_mix(blocks)
    payloads = [
        b"\x00" * 5,
        GOOD_BLOCK[:50],
        build_message("/fxmix/nope", [1]),
        build_message(
            "/fxmix/block", [9, 0, 0, encode_block(np.zeros((2, S.BLOCK)))], "iiib"
        ),  # no session 9
        build_message("/fxmix/query/state", [9], "i"),
    ]
    with S.running_server(queue_size=256) as server, S.open_client(server) as client:
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t0 = time.monotonic()
            sent = 0
            while sent < 10_000 and time.monotonic() - t0 < 3.0:
                flood.sendto(payloads[sent % len(payloads)], server.address)
                sent += 1
        finally:
            flood.close()
        # While the socket buffer is still full the kernel drops datagrams (UDP), pings included: retry.
        assert any(client.ping(timeout_s=0.5) for _ in range(30))
        mix, report = stream_mix(client, x, S.SR, compensate_latency=False, timeout_s=5.0)
        errors = server.core.errors.snapshot()
    assert report.blocks_lost == 0
    np.testing.assert_allclose(mix, ref, atol=1e-4, rtol=0)
    assert sum(errors.values()) > 1000 and {"not_osc", "parse", "unknown_address", "unknown_session"} <= set(
        errors
    )
