"""The engine Session: tracks -> class buses -> streaming normalizer -> (causal network) -> mix."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.host_bridge.engine import Session
from support import signals

SR = 48000


def _tracks(seconds):
    s = signals.song(seconds, SR)
    return np.stack([s["vocals"], s["drums"], s["bass"], s["other"], 0.5 * s["other"]])


def _run(sess, x, block):
    return np.concatenate(
        [sess.process(x[:, :, i : i + block]) for i in range(0, x.shape[-1], block)], axis=-1
    )


def test_session_mixes_with_constant_latency_and_controls():
    x = _tracks(3.0)
    s = Session(SR, 512, 5)
    for i, c in enumerate(["vocals", "drums", "bass", "other", "other"]):
        s.set_track(i, c)
    assert s.set_track(4, name="Lead Vox") == "vocals"  # guessed from the name
    s.set_track(4, "other")
    y = _run(s, x, 512)
    assert y.shape == (2, x.shape[-1]) and np.all(np.isfinite(y))
    assert np.all(y[:, : s.latency_samples] == 0) and np.max(np.abs(y)) > 1e-3
    p = s.track_params(1)
    assert {"gain_db", "pan", "eq", "compressor_threshold_db", "compressor_ratio"} <= set(p)
    # amount 0 = the dry sum, delayed by the latency
    s.set_control("amount", 0.0)
    blk = x[:, :, :512]
    out = np.concatenate([s.process(blk) for _ in range(3)], axis=1)
    dry = np.concatenate([blk.sum(0)] * 3, axis=1)
    lat = s.latency_samples
    assert np.allclose(out[:, lat:], dry[:, : 3 * 512 - lat], atol=1e-6)
    with pytest.raises(ConfigError):
        s.set_control("amount", 2.0)
    with pytest.raises(AudioInputError):
        s.process(np.zeros((4, 2, 512), np.float32))
    st = s.stats()
    assert st["latency_samples"] == lat and set(st["buses"]) == set(s.classes)
    s.close()


def test_session_state_roundtrip_and_model_step():
    import torch
    from fxmix.model.causal import CausalConfig, CausalMixer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = CausalConfig(n_latent=8, bottleneck=8, hidden=8, skip=8, n_blocks=2, n_repeats=1, lstm_layers=1)
    net = CausalMixer(cfg)
    x = _tracks(1.5)
    a = Session(SR, 1024, 5, model=net)
    b = Session(SR, 1024, 5, model=net)
    assert a.latency_samples == 512 + net.latency_samples
    for s in (a, b):  # pedalboard's compressor/limiter envelopes are not part of the saved state
        s.set_control("bypass_compression", True)
        s.set_control("bypass_loudness", True)
    half = 1024 * 40
    _run(a, x[..., :half], 1024)
    b.load_state(a.save_state())
    assert a.track_params(0) == b.track_params(0)
    ya = _run(a, x[..., half:], 1024)
    yb = _run(b, x[..., half:], 1024)
    assert np.all(np.isfinite(ya)) and np.max(np.abs(ya)) > 0 and np.max(np.abs(ya - yb)) <= 1e-4
    a.close()
    b.close()


def test_realtime_session_runs_the_onnx_step_like_the_eager_one():
    """realtime=True (pipelined by default): the latency of a pipelined deterministic session; with the
    normalizer stages bypassed (so planning timing cannot matter) the ONNX Runtime network step gives the eager
    step's mix within 1e-4."""
    import torch
    from fxmix.model.causal import CausalConfig, CausalMixer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = CausalConfig(n_latent=8, bottleneck=8, hidden=8, skip=8, n_blocks=2, n_repeats=1, lstm_layers=1)
    net = CausalMixer(cfg)
    x = _tracks(1.0)
    rt, det = Session(SR, 512, 5, model=net, realtime=True), Session(SR, 512, 5, model=net, pipeline=True)
    assert rt._step_fn is not None and det._step_fn is None and rt.pipeline
    assert rt.latency_samples == det.latency_samples
    for s in (rt, det):
        for i, c in enumerate(["vocals", "drums", "bass", "other", "other"]):
            s.set_track(i, c)
        for stage in ("eq", "compression", "panning", "loudness"):
            s.set_control("bypass_" + stage, True)
    ya, yb = _run(rt, x, 512), _run(det, x, 512)
    assert np.max(np.abs(ya)) > 1e-4 and np.max(np.abs(ya - yb)) <= 1e-4
    rt.close()
    det.close()


def test_realtime_plans_come_from_a_planner_process_that_survives_being_killed():
    """realtime=True: plans run in the shared planner process (not a thread of this one), through shared
    memory for the analysis windows; if that process dies it is replaced and planning goes on."""
    import time

    from fxmix.dsp.streaming import planner_process

    s = Session(SR, 512, 4, realtime=True)
    assert isinstance(s.executor, planner_process.ProcessPlanner)
    for i, c in enumerate(["vocals", "drums", "bass", "other"]):
        s.set_track(i, c)
    x = _tracks(4.0)[:4]
    neutral = [b.applied for b in s.buses]

    def play(seconds: float, until=None, max_wall_s: float = 90.0) -> None:
        """Stream ``seconds`` of audio, then on until ``until()`` holds (the planner only gets idle CPU:
        on a loaded machine its plans take longer to land)."""
        t_end = time.monotonic() + max_wall_s
        k = 0
        while k < seconds * SR / 512 or (until is not None and not until() and time.monotonic() < t_end):
            i = (k * 512) % (x.shape[-1] - 512)
            y = s.process(x[:, :, i : i + 512])
            assert np.all(np.isfinite(y))
            time.sleep(0.002)  # roughly paced, so the planner keeps up
            k += 1

    play(6.0, until=lambda: all(b.applied is not a for b, a in zip(s.buses, neutral)))
    assert all(b.applied is not a for b, a in zip(s.buses, neutral))  # plans landed
    first = planner_process._CHILD
    assert first.proc.pid != os.getpid() and first.alive
    if hasattr(os, "SCHED_IDLE"):  # Linux: the planner only gets CPU time the audio side leaves idle
        assert os.sched_getscheduler(first.proc.pid) == os.SCHED_IDLE
    assert all(b.plans_applied > 0 for b in s.buses)
    first.proc.kill()
    first.proc.wait(10)
    before = [b.applied for b in s.buses]
    # never raises; the jobs lost with the process run again in a new one
    play(6.0, until=lambda: any(b.applied is not a for b, a in zip(s.buses, before)))
    assert planner_process._CHILD is not first and planner_process._CHILD.alive
    assert any(b.applied is not a for b, a in zip(s.buses, before))
    s.close()


def test_pipelined_network_is_the_same_mix_one_block_later():
    """pipeline=True: the network runs one block behind on its own thread; the output is the unpipelined
    output delayed by exactly block_samples (also with host blocks of other sizes, reset and bypass)."""
    import torch
    from fxmix.model.causal import CausalConfig, CausalMixer

    torch.manual_seed(0)
    cfg = CausalConfig(n_latent=8, bottleneck=8, hidden=8, skip=8, n_blocks=2, n_repeats=1, lstm_layers=1)
    net = CausalMixer(cfg).eval()
    x = _tracks(2.0)
    plain, piped = Session(SR, 512, 5, model=net), Session(SR, 512, 5, model=net, pipeline=True)
    assert piped.latency_samples == plain.latency_samples + 512
    for s in (plain, piped):
        for i, c in enumerate(["vocals", "drums", "bass", "other", "other"]):
            s.set_track(i, c)
    ya, yb = _run(plain, x, 512), _run(piped, x, 512)
    assert np.max(np.abs(ya)) > 1e-3
    assert np.max(np.abs(yb[:, 512:] - ya[:, :-512])) <= 1e-6 and not np.any(yb[:, :512])
    for s in (plain, piped):  # host blocks of other sizes, and the model bypassed half-way
        s.set_control("reset")
    sizes = [512, 300, 1024, 700, 512, 2000] * 8
    edges = np.cumsum([0, *sizes])
    outs = {id(s): [] for s in (plain, piped)}
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        for s in (plain, piped):
            if k == len(sizes) // 2:
                s.set_control("bypass_model", True)
            outs[id(s)].append(s.process(x[:, :, a:b]))
    ya, yb = (np.concatenate(outs[id(s)], axis=1) for s in (plain, piped))
    assert np.max(np.abs(yb[:, 512:] - ya[:, :-512])) <= 1e-6
    plain.close()
    piped.close()


def test_huge_finite_samples_are_clipped_and_counted_not_rejected():
    """A 3e38 sample (a host's uninitialised buffer) used to overflow the bus sums and leave the mix NaN from
    there on; it is clipped to +60 dBFS and counted, and the mix stays finite. NaN/inf still raise."""
    x = _tracks(1.0)[:2]
    n_blocks = x.shape[-1] // 512
    clean, hit = Session(SR, 512, 2), Session(SR, 512, 2)
    bad = x.copy()
    bad[1, 0, 600:603] = [3e38, -3e38, 2e3]
    ya, yb = _run(clean, x[..., : n_blocks * 512], 512), _run(hit, bad[..., : n_blocks * 512], 512)
    assert np.isfinite(yb).all() and hit.stats()["clipped_samples"] == 3
    assert clean.stats()["clipped_samples"] == 0 and np.isfinite(ya).all()
    with pytest.raises(AudioInputError, match="NaN/inf"):
        hit.process(np.full((2, 2, 512), np.inf, np.float32))
    clean.close()
    hit.close()
