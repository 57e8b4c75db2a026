"""The planner process's wire protocol (length-prefixed JSON + raw array bytes, no pickles) and the process
itself: every frame kind round-trips exactly, anything outside the allowlist and every truncated or garbled
frame is refused with a FrameError that says what is wrong, and a job the process cannot decode fails alone."""

from __future__ import annotations

import json
import os
import struct
import time

import numpy as np
import pytest
from fxmix.dsp import constants as C
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.errors import AudioInputError, ConfigError, FxmixError, ModelLoadError
from fxmix.dsp.params import CompressorParams, EqParams, LoudnessParams, PanParams, ReverbParams
from fxmix.dsp.profile import load_profile
from fxmix.dsp.streaming import StreamingNormalizer, planner_process
from fxmix.dsp.streaming.planner import Applied, Planner
from fxmix.dsp.streaming.planner_process import (
    FrameError,
    PlannerDied,
    decode,
    decode_frame,
    encode,
    read_message,
    split_frame,
)
from fxmix.dsp.streaming.windows import Windows
from support import signals

SR = 48000


def _same(a, b) -> None:
    """Deep equality that also checks types, array dtypes and shapes (bit-exact values)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, Applied):
        for f in ("eq_db", "pan_l_db", "pan_r_db", "pan_balance_db", "comp_threshold_db", "gain_db"):
            _same(getattr(a, f), getattr(b, f))
    else:
        assert a == b or (a != a and b != b), (a, b)


def _targets():
    return load_profile(C.REFERENCE_PROFILE).targets_for("drums")


def _plain_values():
    rng = np.random.default_rng(0)
    return {
        "none": None,
        "bools": [True, False],
        "text": "snapshot ä",
        "int": 7,
        "np_int": np.int64(-3),
        "float": 0.1,
        "np_float": np.float32(0.25),
        "nan": float("nan"),
        "arrays": [
            rng.standard_normal((2, 5)).astype(np.float32),
            rng.standard_normal(7),
            (rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))).astype(np.complex64),
            np.arange(6, dtype=np.int16).reshape(3, 2),
            np.array([True, False, True]),
            np.zeros((0, 3)),
            np.array(2.5),
        ],
        "short_tuple": (1, "a", None),
        "float_curve": tuple(float(v) for v in np.linspace(-3, 3, 9)),  # travels as one array
        "nested": {"inner": [(1.0, 2.0), {"deep": np.ones(2)}]},
    }


def test_plain_values_arrays_tuples_and_dicts_round_trip_exactly():
    obj = _plain_values()
    back = decode_frame(encode(obj))
    expected = dict(obj, np_int=-3, np_float=0.25)  # numpy scalars arrive as Python numbers
    _same(expected, back)
    assert back["arrays"][0].flags.writeable  # arrays are usable as they come (no read-only views)


def test_every_allowlisted_dataclass_round_trips():
    freqs = tuple(float(f) for f in band_centers_hz())
    n = len(freqs)
    values = [
        EqParams(freqs, tuple(float(g) for g in np.linspace(-6, 6, n))),
        CompressorParams(-20.0, 4.0, 10.0, 100.0, -3.5),
        PanParams(freqs, (0.5,) * n, (-0.5,) * n, 800.0, 1.25),
        LoudnessParams(-4.0, -16.0, -12.0, -2.0, -1.5, 0.25),
        _targets(),
        Applied(np.zeros(n), np.ones(n), -np.ones(n), 0.5, -12.0, 3.0, -6.0),
    ]
    for v in values:
        back = decode_frame(encode(v))
        assert type(back) is type(v)
        for f in v.__dataclass_fields__:
            _same(getattr(v, f), getattr(back, f))


ERRORS = [FxmixError("x"), AudioInputError("bad wav"), ConfigError("bad profile"), ModelLoadError("m")]


@pytest.mark.parametrize("err", [*ERRORS, PlannerDied("gone")])
def test_allowlisted_errors_round_trip_as_their_own_type(err):
    back = decode_frame(encode(err))
    assert type(back) is type(err) and str(back) == str(err)


def test_other_errors_arrive_as_fxmix_errors_naming_their_type():
    back = decode_frame(encode(KeyError("eq_db")))
    assert type(back) is FxmixError and "KeyError" in str(back) and "eq_db" in str(back)


def test_planner_and_shared_windows_travel_by_reference():
    planner = Planner(SR, "drums", _targets(), ("eq", "compression"), 512, True)
    back = decode_frame(encode({"planner": planner}))["planner"]
    assert type(back) is Planner and back.spec().keys() == planner.spec().keys()
    for k, v in planner.spec().items():
        if k == "targets":
            _same(v.spectrum_db, back.spec()[k].spectrum_db)
        else:
            assert back.spec()[k] == v
    win = Windows((3, 2, 16), shared=True)
    try:
        win.array[1, 0, :4] = [1, 2, 3, 4]
        frame = encode(win)
        assert len(frame) < 200  # the audio itself does not travel: only where to find it
        view = decode_frame(frame)
        assert np.array_equal(view.array, win.array)
        view.close()  # a view owns nothing
        assert os.path.exists(win.path)
    finally:
        win.close()
    assert not os.path.exists(win.path)
    with pytest.raises(ValueError, match="not in shared memory"):
        encode(Windows((3, 2, 4)))


def test_a_real_snapshot_and_its_plan_survive_the_round_trip():
    nz = StreamingNormalizer(SR, "drums")
    x = signals.drums(3.0)
    for i in range(0, x.shape[1] - 512, 512):
        nz.process(x[:, i : i + 512])
    nz.sync_stats()
    snap = nz._snapshot(nz.k - nz.k % 64)  # a hop where plans (and the compressor's) are due
    assert snap["plan"]

    direct = nz.planner(dict(snap, planned=dict(snap["planned"])))
    assert direct["eq_spec"] is not None and "compression" in direct["planned"]  # a full plan travels
    msg = decode_frame(encode({"planner": nz.planner, "snap": snap}))
    via = msg["planner"](msg["snap"])
    back = decode_frame(encode(via))
    for key in ("eq_spec", "pan_spec"):
        assert (direct[key] is None) == (back[key] is None)
        if direct[key] is not None:
            assert back[key].dtype == direct[key].dtype and np.array_equal(back[key], direct[key])
    _same(direct["applied"], back["applied"])
    assert back["planned"].keys() == direct["planned"].keys()
    assert back["planned"]["compression"] == direct["planned"]["compression"]
    assert type(back["planned"]["eq"]) is type(direct["planned"]["eq"])
    nz.close()


@pytest.mark.parametrize("value", [open, ReverbParams(200.0, 8000.0), {1: "int key"}, object(), {"s": {1, 2}}])
def test_encode_refuses_what_is_not_allowlisted(value):
    with pytest.raises(TypeError, match="planner frame"):
        encode(value)


def _frame(header_obj, body: bytes = b"") -> bytes:
    header = json.dumps(header_obj).encode()
    return struct.pack("<QI", len(header) + len(body), len(header)) + header + body


@pytest.mark.parametrize(
    "header_obj, match",
    [
        ({"__dc__": "system", "fields": {"command": "true"}}, "unknown object"),
        ({"__dc__": "ReverbParams", "fields": {}}, "unknown object"),
        ({"__pickle__": "cos\nsystem"}, "unknown object"),
        ({"__nd__": [0, 8], "dtype": "|O", "shape": [1]}, "Python objects"),
        ({"__nd__": [0, 8], "dtype": "<f8"}, "bad array reference"),
        ({"__nd__": [0, 12], "dtype": "<f8", "shape": [1]}, "do not make an array"),
        ({"__dc__": "EqParams", "fields": {"command": "true"}}, "malformed"),
        ({"__error__": "ConfigError"}, "malformed"),
    ],
)
def test_decode_refuses_unknown_or_malformed_objects(header_obj, match):
    with pytest.raises(FrameError, match=match):
        decode_frame(_frame(header_obj, bytes(16)))


def test_truncated_frames_are_refused_with_a_clear_error():
    frame = encode({"a": np.arange(10.0), "b": "x"})
    for cut in (1, 8, 40, len(frame) - 1):  # inside the prefix, the header, the array bytes
        with pytest.raises(FrameError, match="truncated"):
            decode_frame(frame[:cut])
    header, body = split_frame(frame)
    with pytest.raises(FrameError, match="outside the .*truncated"):
        decode(header, body[:-8])  # the header's array lies past the end of the bytes that came
    with pytest.raises(FrameError, match="truncated or garbled"):
        decode_frame(frame + b"\0")


def test_garbled_frames_are_refused_with_a_clear_error():
    frame = bytearray(encode({"key": 3, "value": 1.5}))
    garbled = bytearray(frame)
    garbled[13:16] = b"\xff\xfe\x00"  # inside the JSON header
    with pytest.raises(FrameError, match="not UTF-8 JSON"):
        decode_frame(bytes(garbled))
    impossible = struct.pack("<QI", 10, 50) + bytes(10)  # a header longer than the frame
    with pytest.raises(FrameError, match="impossible"):
        decode_frame(impossible)
    huge = struct.pack("<QI", 1 << 62, 4) + b"null"
    with pytest.raises(FrameError, match="impossible"):
        decode_frame(huge)


def test_pipe_reads_whole_frames_and_refuses_a_stream_cut_inside_one():
    r, w = os.pipe()
    try:
        first = encode({"key": 1, "ok": True, "value": np.arange(4.0)})
        os.write(w, first + encode("ready"))
        msg = read_message(r)
        assert msg["key"] == 1 and np.array_equal(msg["value"], np.arange(4.0))
        assert read_message(r) == "ready"
        os.write(w, first[: len(first) // 2])
        os.close(w)
        w = None
        with pytest.raises(FrameError, match="truncated"):
            read_message(r)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    r, w = os.pipe()
    os.close(w)
    try:
        assert read_message(r) is None  # a clean end of stream between frames
    finally:
        os.close(r)


def test_planner_process_survives_a_request_it_cannot_decode():
    """A job whose shared analysis windows are already gone (its session closed) fails on its own; the
    planner process keeps serving the next jobs."""
    planner = planner_process.ProcessPlanner(0.5)
    nz = StreamingNormalizer(SR, "drums", executor=planner, realtime=True)
    gone = Windows((3, 2, 16), shared=True)
    gone.close()  # the file is unlinked: attaching it in the planner fails
    bad = planner.submit(nz.planner, {"windows": (gone, (16, 16, 16))})
    with pytest.raises(FxmixError, match="planner request: FileNotFoundError"):
        bad.result(timeout=30)
    child = planner_process._CHILD
    assert child.alive and child.proc.poll() is None
    x = signals.drums(6.0)
    t_end = time.monotonic() + 90.0  # the planner only gets idle CPU: longer on a loaded machine
    k = 0
    while k < x.shape[1] // 512 - 1 or (nz.plans_applied == 0 and time.monotonic() < t_end):
        i = (k * 512) % (x.shape[1] - 512)
        nz.process(x[:, i : i + 512])
        time.sleep(0.002)
        k += 1
    assert nz.plans_applied > 0 and nz.plan_errors == 0
    assert planner_process._CHILD is child and child.alive
    nz.close()
