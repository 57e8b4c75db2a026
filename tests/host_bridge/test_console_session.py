"""The real-time console mixer: the per-track chain against its pedalboard twin, a real session through the
console path, and parameter changes without clicks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fxmix.dsp.audio import read_audio
from fxmix.dsp.bands import band_weights
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness
from fxmix.host_bridge.console_chain import ConsoleChain, console_curve_on_grid
from fxmix.host_bridge.console_session import ConsoleSession
from fxmix.host_bridge.sessions import make_session_factory
from fxmix.model.console import ConsoleParams, render_console_pedalboard

SR = 44100
BLOCK = 256
CLASSES = ["vocals", "drums", "bass", "other"]
DEMO = Path(__file__).resolve().parents[2] / "fxmix" / "demo"


def _demo(seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    return np.stack([read_audio(DEMO / f"{c}.flac").audio[:, :n] for c in CLASSES]).astype(np.float32)


def _fixed_params() -> ConsoleParams:
    rng = np.random.default_rng(1)
    base = ConsoleParams.neutral(1, 4, CLASSES)
    return ConsoleParams(
        gain_db=torch.tensor([[-3.0, 2.0, -6.0, 0.0]]),
        pan=torch.tensor([[0.3, -0.5, 0.0, 0.8]]),
        eq_db=torch.tensor(rng.uniform(-6, 6, (1, 4, base.eq_db.shape[-1])), dtype=torch.float32),
        comp_threshold_db=torch.tensor([[-20.0, -15.0, -25.0, -10.0]]),
        comp_ratio=torch.tensor([[4.0, 3.0, 2.0, 6.0]]),
        comp_attack_ms=base.comp_attack_ms,
        comp_release_ms=base.comp_release_ms,
        reverb_send_db=torch.tensor([[-12.0, -20.0, -40.0, -15.0]]),
        master_gain_db=torch.tensor([-2.0]),
    )


def _chain_render(x: np.ndarray, p: ConsoleParams) -> np.ndarray:
    """The chain with fixed decisions over whole blocks, its latency removed: (2, n) aligned with ``x``."""
    v = p.map(lambda t: t.detach().double()[0].numpy())
    chain = ConsoleChain(SR, BLOCK, x.shape[0])
    chain.set_timing(v.comp_attack_ms, v.comp_release_ms)
    chain.set_targets(gain_db=v.gain_db, pan=v.pan, threshold_db=v.comp_threshold_db, ratio=v.comp_ratio,
                      send_db=v.reverb_send_db, drive_db=np.zeros(x.shape[0]), master_db=float(v.master_gain_db))
    chain.jump()
    for i in range(x.shape[0]):
        chain.set_eq(i, console_curve_on_grid(v.eq_db[i]))
    chain.conv.apply_pending()
    lat, n = chain.latency_samples, x.shape[-1]
    padded = np.pad(x, ((0, 0), (0, 0), (0, lat + BLOCK)))
    total = (n + lat) // BLOCK * BLOCK + BLOCK
    try:
        out = np.concatenate([chain.process(padded[:, :, k : k + BLOCK]) for k in range(0, total, BLOCK)], axis=1)
    finally:
        chain.close()
    return out[:, lat : lat + n]


def _bands_db(z: np.ndarray) -> np.ndarray:
    z = z[:, SR // 2 : -SR // 2]  # the edges (compressor settling) left out
    power = (np.abs(np.fft.rfft(z, axis=-1)) ** 2).sum(axis=0)
    return 10 * np.log10(band_weights(z.shape[-1], SR) @ power + 1e-20)


def test_chain_equals_pedalboard_twin_per_track():
    """Each track alone through the chain and through the twin (EQ, compressor, fader, pan, reverb send,
    master): within 0.1 dB in every 1/6-octave band within 50 dB of the track's loudest, and 0.1 LU."""
    x = _demo(5.0)
    p = _fixed_params()
    for i in range(4):
        solo = p.map(lambda t, i=i: t[:, i : i + 1] if t.ndim > 1 else t)
        ref = render_console_pedalboard(x[i : i + 1], solo, SR)
        got = _chain_render(x[i : i + 1], solo)
        b_ref, b_got = _bands_db(ref), _bands_db(got)
        live = b_ref > b_ref.max() - 50.0
        assert np.abs(b_got - b_ref)[live].max() < 0.1, CLASSES[i]
        assert abs(integrated_loudness(got, SR) - integrated_loudness(ref, SR)) < 0.1, CLASSES[i]


def test_session_console_path_reports_each_track():
    """A real session of four demo tracks through the console path (deterministic mode): a finite mix, and
    every track's own decisions (normalization gain towards its class loudness, the console's gain and pan)."""
    x = _demo(6.0)
    x[2] *= 0.1  # the bass 20 dB down: its normalization gain must make up for it
    s = ConsoleSession(SR, BLOCK, 4)
    try:
        for i, c in enumerate(CLASSES):
            s.set_track(i, name=c.capitalize(), class_name=c)
        n = x.shape[-1] // BLOCK * BLOCK
        y = np.concatenate([s.process(x[:, :, k : k + BLOCK]) for k in range(0, n, BLOCK)], axis=1)
        assert np.isfinite(y).all() and np.abs(y).max() > 1e-3
        params = s.all_track_params()
        stats = s.stats()
    finally:
        s.close()
    assert stats["decisions"] >= 5 and stats["tracks_decided"] == 4 and stats["mixer"] == "console"
    for e in params:
        total = e["normalization"]["gain_db"] + e["console"]["gain_db"] + e["console"]["master_gain_db"]
        assert e["gain_db"] == pytest.approx(total, abs=2e-3)
        assert -1.0 <= e["pan"] <= 1.0 and e["normalization"]["decided"]
    gains = [e["normalization"]["gain_db"] for e in params]
    # each track its own gain: the quiet bass gets the most (its raw loudness is the lowest by far)
    assert len({round(g, 1) for g in gains}) == 4 and int(np.argmax(gains)) == 2


def test_factory_opens_console_sessions():
    factory = make_session_factory("console", realtime=False)
    s = factory(48000, 512, 3, None)
    try:
        assert isinstance(s, ConsoleSession)
        assert s.latency_samples == 512 + s.chain.latency_samples
        out = s.process(np.zeros((3, 2, 512), np.float32))
        assert out.shape == (2, 512) and not out.any()
        assert [set(e) >= {"gain_db", "pan", "console", "normalization"} for e in s.all_track_params()] == [True] * 3
    finally:
        s.close()


def _max_step(chain: ConsoleChain, x: np.ndarray, change, jump: bool) -> float:
    """Largest sample-to-sample difference of the chain's output over a change made at block 40."""
    outs = []
    for k in range(0, x.shape[-1], BLOCK):
        if k == 40 * BLOCK:
            change(chain)
            if jump:
                chain.jump()
                chain.conv.apply_pending()
        outs.append(chain.process(x[:, :, k : k + BLOCK]))
    chain.close()
    y = np.concatenate(outs, axis=1)
    return float(np.abs(np.diff(y[:, 30 * BLOCK :], axis=1)).max())


@pytest.mark.parametrize(
    ("change", "max_gain"),
    [
        (lambda c: c.set_targets(gain_db=np.array([12.0]), pan=np.array([-1.0])), 10 ** (12 / 20) * np.sqrt(2)),
        (lambda c: c.set_eq(0, console_curve_on_grid(np.array([0, 0, 0, 0, 12.0, 12.0, 0, 0, 0, 0]))), 10 ** (12 / 20)),
        (lambda c: c.set_targets(threshold_db=np.array([-30.0]), ratio=np.array([8.0])), 1.0),
    ],
    ids=["gain+pan", "eq", "compressor"],
)
def test_parameter_changes_make_no_clicks(change, max_gain):
    """A sine through the chain: after a sudden new target the output moves no faster from one sample to the
    next than the sine itself can at the largest gain reached (+5 %), while the same change applied at once
    (``jump``, no cross-fade) steps past that bound."""
    f, amp = 440.0, 0.25
    t = np.arange(80 * BLOCK) / SR
    x = np.tile((amp * np.sin(2 * np.pi * f * t)).astype(np.float32), (1, 2, 1))
    bound = amp * 2 * np.pi * f / SR * max_gain * 1.05
    smoothed = _max_step(ConsoleChain(SR, BLOCK, 1), x, change, jump=False)
    stepped = _max_step(ConsoleChain(SR, BLOCK, 1), x, change, jump=True)
    assert smoothed <= bound
    assert stepped > 2 * bound


def test_analysis_features_equal_the_mixers_track_features():
    """The session computes the console mixer's features from its own STFT (one STFT feeds the features, the
    spectrum and the loudness): equal to :func:`fxmix.model.mixer.track_features` on the same frames."""
    from fxmix.model.mixer import track_features

    s = ConsoleSession(48000, 256, 2)
    try:
        x = (0.1 * np.random.default_rng(0).standard_normal((2, 2, 48000))).astype(np.float32)
        an = s.analysis
        power = an._new_power(x)
        bands = power @ an._band_w.T
        t, _, f, b = bands.shape
        ours = (np.log10(bands + 1e-10) * 0.5).transpose(0, 1, 3, 2).reshape(t, 2 * b, f)
        ref = track_features(torch.from_numpy(x), s.config).numpy()[:, : 2 * b]  # the colour: tested below
        j0 = s.config.n_fft // 2 // s.config.hop
        np.testing.assert_allclose(ours, ref[..., j0 : j0 + f], atol=1e-4, rtol=0)
    finally:
        s.close()


def test_osc_params_and_reaper_feedback_carry_each_tracks_gain_and_pan():
    """``fxmix serve --model console`` over real UDP: /fxmix/params and the Reaper feedback give each track
    its own gain and pan (the normalization's gain + the console's fader and master; the console's pan)."""
    import json
    import socket

    from fxmix.host_bridge.osc.client import stream_mix
    from support import osc as S

    reaper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reaper.bind(("127.0.0.1", 0))
    reaper.settimeout(0.05)
    try:
        with (
            S.running_server(model="console", reaper_feedback=reaper.getsockname()) as server,
            S.open_client(server) as client,
        ):
            mix, report = stream_mix(client, S.stems(4.0), S.SR, timeout_s=20.0)
            client.send("/fxmix/query/params", 0)
            params = [json.loads(client.wait_reply("/fxmix/params", 10.0)[2]) for _ in S.TRACKS]
            got = S.reaper_feedback(reaper, 2 * len(S.TRACKS))
    finally:
        reaper.close()
    assert report.blocks_lost == 0 and np.isfinite(mix).all() and np.abs(mix).max() > 1e-3
    assert all(p["mixer"] == "console" and p["normalization"]["decided"] for p in params)
    assert len({round(p["gain_db"], 2) for p in params}) == len(params)  # each track its own gain
    for k, p in enumerate(params):
        assert got[f"/track/{k + 1}/volume/db"] == pytest.approx(p["gain_db"], abs=1e-3)
        assert got[f"/track/{k + 1}/pan"] == pytest.approx(0.5 * (p["pan"] + 1.0), abs=1e-3)


def test_a_restored_chain_continues_as_the_original():
    """The console chain with compressors acting hard and reverb sends, saved after 3 s and restored into a new
    chain: the same output blocks (within 1e-4) for the next 2 s; without the replayed compressor detector
    and reverb sends the restored chain would differ by more than ten times that."""
    x = _demo(5.0)
    v = _fixed_params().map(lambda t: t.detach().double()[0].numpy())
    half, end = int(3.0 * SR) // BLOCK * BLOCK, x.shape[-1] // BLOCK * BLOCK
    chains = [ConsoleChain(SR, BLOCK, 4) for _ in range(4)]
    a = chains[0]
    a.set_timing(v.comp_attack_ms, v.comp_release_ms)
    a.set_targets(gain_db=v.gain_db, pan=v.pan, threshold_db=v.comp_threshold_db, ratio=v.comp_ratio,
                  send_db=v.reverb_send_db, drive_db=np.full(4, 6.0), master_db=float(v.master_gain_db))
    for i in range(4):
        a.set_eq(i, console_curve_on_grid(v.eq_db[i]))
    try:
        for k in range(0, half, BLOCK):
            a.process(x[:, :, k : k + BLOCK])
        state = a.state_dict()
        spoiled = {key: dict(state, **{key: np.zeros_like(state[key])}) for key in ("detector", "sends")}
        for chain, st in zip(chains[1:], [state, spoiled["detector"], spoiled["sends"]]):
            chain.load_state_dict(st)
        outs = [np.concatenate([c.process(x[:, :, k : k + BLOCK]) for k in range(half, end, BLOCK)], axis=1)
                for c in chains]
    finally:
        for c in chains:
            c.close()
    diffs = [float(np.abs(outs[0] - y).max()) for y in outs[1:]]
    print(f"restored console chain: max |diff| {diffs[0]:.2e}; without the detector {diffs[1]:.2e}, "
          f"without the sends {diffs[2]:.2e} (output peak {np.abs(outs[0]).max():.2f})")
    assert diffs[0] <= 1e-4 and min(diffs[1:]) > 1e-3


def _through_files(state: dict, folder: Path) -> dict:
    """``state`` written as an ``.npz`` of its arrays (read back without pickles) and a JSON of the rest."""
    import json

    arrays, rest = {}, {}

    def split(d: dict, prefix: str, out: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                split(v, f"{prefix}{k}/", out.setdefault(k, {}))
            elif isinstance(v, np.ndarray):
                arrays[f"{prefix}{k}"] = v
            else:
                out[k] = v

    split(state, "", rest)
    np.savez(folder / "state.npz", **arrays)
    (folder / "state.json").write_text(json.dumps(rest))
    back = json.loads((folder / "state.json").read_text())
    with np.load(folder / "state.npz", allow_pickle=False) as z:
        for key in z.files:
            *path, last = key.split("/")
            d = back
            for p in path:
                d = d.setdefault(p, {})
            d[last] = z[key]
    return back


def test_a_restored_session_continues_as_the_original(tmp_path):
    """A console session saved after 5 s (statistics, normalization and decisions settled, reverb sends
    acting), its state through .npz + JSON files, restored into a new session: the two give the same output
    blocks (within 1e-4) for the next 3 s, decisions made after the restore included."""
    x = _demo(8.0)
    x[2] *= 0.1
    a, b = ConsoleSession(SR, BLOCK, 4), ConsoleSession(SR, BLOCK, 4)
    try:
        for i, c in enumerate(CLASSES):
            a.set_track(i, name=c.capitalize(), class_name=c)
        half = int(5.0 * SR) // BLOCK * BLOCK
        for k in range(0, half, BLOCK):
            a.process(x[:, :, k : k + BLOCK])
        b.load_state(_through_files(a.save_state(), tmp_path))
        assert b.all_track_params() == a.all_track_params() and b.track_class == list(CLASSES)
        decisions = a.stats()["decisions"]
        p = a.console
        assert decisions >= 5 and (p["reverb_send_db"] > -20).any()
        end = x.shape[-1] // BLOCK * BLOCK
        ya = np.concatenate([a.process(x[:, :, k : k + BLOCK]) for k in range(half, end, BLOCK)], axis=1)
        yb = np.concatenate([b.process(x[:, :, k : k + BLOCK]) for k in range(half, end, BLOCK)], axis=1)
        assert a.stats()["decisions"] >= decisions + 3 and b.stats()["decisions"] == a.stats()["decisions"]
        print(f"restored console session: max |diff| {np.abs(ya - yb).max():.2e} over {ya.shape[-1] / SR:.1f} s "
              f"(output peak {np.abs(ya).max():.2f})")
        assert np.abs(ya).max() > 1e-2 and np.abs(ya - yb).max() <= 1e-4
    finally:
        a.close()
        b.close()
    with pytest.raises(ConfigError, match="block_samples"):
        c = ConsoleSession(SR, 2 * BLOCK, 4)
        try:
            c.load_state(a.save_state())
        finally:
            c.close()


def _assert_close_to_scale(actual, desired, rel=1e-5):
    """Equal within `rel` of the array's largest magnitude (float32 rounding, not a different decision)."""
    desired = np.asarray(desired)  # assert_allclose checks the shapes too
    scale = float(np.abs(desired).max()) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=0, atol=rel * scale)


def test_analysis_process_decides_as_the_inline_analysis():
    """The console analysis in its child process (audio through the shared ring, requests and replies as
    frames) gives the same decisions as the same analysis in this process: EQ filter spectra, chain targets,
    report and counts, analysis after analysis (decisions of the console mixer included)."""
    from fxmix.dsp.streaming.windows import Windows
    from fxmix.host_bridge.console_analysis import ANALYSIS_S, AnalysisProcess, ConsoleAnalysis

    x = _demo(3.0)
    s = ConsoleSession(SR, BLOCK, 4)
    ring = Windows((4, 2, x.shape[-1]), shared=True)
    ring.array[...] = x
    config = {"sample_rate": SR, "block_samples": BLOCK, "n_tracks": 4, "classes": list(s.classes),
              "profile": s.profile.to_dict(), "model_dir": str(s.runner.folder), "name": s.model_label,
              "backend": "onnx" if s.runner.session is not None else "eager"}
    child = AnalysisProcess(config, ring.ref())
    try:
        here = ConsoleAnalysis(SR, BLOCK, 4, s.runner, s.profile, s.classes)
        here.reset()
        here.set_tracks(CLASSES, CLASSES)
        child.call({"op": "tracks", "classes": CLASSES, "names": CLASSES})
        hop, designs = int(ANALYSIS_S * SR), 0
        for a in range(0, x.shape[-1] - hop + 1, hop):
            mine = here.analyse(np.ascontiguousarray(x[:, :, a : a + hop]))
            theirs = child.call({"op": "analyse", "start": a, "stop": a + hop}).result(60)
            assert theirs["report"] == mine["report"] and theirs["counts"] == mine["counts"]
            np.testing.assert_array_equal(theirs["eq_tracks"], mine["eq_tracks"])
            # float32 FFTs may take other kernels (thread counts) in another process: equal to rounding
            _assert_close_to_scale(theirs["eq_spectra"], mine["eq_spectra"])
            designs += len(mine["eq_tracks"])
            for k, v in mine["targets"].items():
                _assert_close_to_scale(theirs["targets"][k], v)
        assert mine["counts"]["analyses"] == 12 and mine["counts"]["decisions"] >= 3 and designs >= 4
    finally:
        child.close()
        ring.close()
        s.close()
    assert child.proc.returncode == 0


def test_realtime_session_streams_as_the_inline_one_while_frozen():
    """A realtime console session (chain on its worker thread in the FIFO's block, analysis in a child process)
    with its decisions frozen gives the same blocks as an inline one, at the same latency: running the chain
    on another thread adds no delay and changes no sample."""
    x = _demo(2.0)
    a, b = ConsoleSession(SR, BLOCK, 4), ConsoleSession(SR, BLOCK, 4, realtime=True)
    try:
        assert b.stats()["analysis"] == "process" and b.stats()["chain"] == "thread"
        assert b.latency_samples == a.latency_samples
        for s in (a, b):
            for i, c in enumerate(CLASSES):
                s.set_track(i, class_name=c)
            s.set_control("freeze")
        n = x.shape[-1] // BLOCK * BLOCK
        ya, yb = (np.concatenate([s.process(x[:, :, k : k + BLOCK]) for k in range(0, n, BLOCK)], axis=1)
                  for s in (a, b))
    finally:
        a.close()
        b.close()
    assert np.abs(ya).max() > 1e-3
    np.testing.assert_array_equal(ya, yb)


def test_a_killed_analysis_process_is_replaced_and_decisions_resume():
    """The analysis child killed mid-session (SIGKILL): the session starts a new one, tells it the tracks and
    controls in force, and decisions resume from the audio that follows; the chain keeps its last decisions
    meanwhile and the audio never stops."""
    import os
    import signal
    import time

    x = np.tile(_demo(4.0), (1, 1, 6))  # 24 s
    s = ConsoleSession(SR, BLOCK, 4, realtime=True)
    try:
        assert s.stats()["analysis"] == "process"
        for i, c in enumerate(CLASSES):
            s.set_track(i, class_name=c)
        s.set_control("bypass_eq", True)
        k = 0

        def feed(until, limit_s=120.0):
            nonlocal k
            t0 = time.monotonic()
            while not until():
                assert time.monotonic() - t0 < limit_s, s.stats()
                y = s.process(x[:, :, k % (x.shape[-1] - BLOCK) : k % (x.shape[-1] - BLOCK) + BLOCK])
                assert y.shape == (2, BLOCK) and np.isfinite(y).all()
                k += BLOCK
                time.sleep(0.001)  # the child analyses while the blocks arrive

        feed(lambda: s.stats()["decisions"] >= 2)
        first = s._worker
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        before = s.stats()["decisions"]
        feed(lambda: s.stats()["analysis_restarts"] == 1 and s.stats()["decisions"] >= before + 2)
        assert s._worker is not first and s._worker.proc.poll() is None
        assert s.stats()["analysis"] == "process"
        # the control reached the new child: its reports keep every normalization EQ flat
        assert all(e["eq"] == {"low_db": 0.0, "mid_db": 0.0, "high_db": 0.0} for e in s.all_track_params())
    finally:
        s.close()


def _stream_demo(model_dir, x: np.ndarray, inspect):
    """``x`` (4 tracks, one per class) through a console session with the mixer in ``model_dir`` -> (the mix,
    ``inspect(session)`` read before the session closes)."""
    s = ConsoleSession(SR, BLOCK, 4, model=str(model_dir), profile="musdb18-reference")
    try:
        for i, c in enumerate(CLASSES):
            s.set_track(i, name=c, class_name=c)
        n = x.shape[-1] // BLOCK * BLOCK
        y = np.concatenate([s.process(x[:, :, k : k + BLOCK]) for k in range(0, n, BLOCK)], axis=1)
        return y, inspect(s)
    finally:
        s.close()


def test_a_colour_mixer_reads_what_the_streaming_normalization_changed(tmp_path):
    """A mixer that reads the colour gets, per track, minus the normalization's curve and gain (dB / 20) as
    its extra feature bands: the offline colour of the same change (:func:`fxmix.model.mixer.colour_of`)."""
    from fxmix.model.config import MixerConfig
    from fxmix.model.mixer import ConsoleMixer
    from fxmix.model.states import save_model

    torch.manual_seed(0)
    net = ConsoleMixer(MixerConfig(conv_channels=8, d_model=16, n_heads=2, n_layers=1, ff_size=16, colour=True))
    torch.nn.init.normal_(net.track_head.weight, std=0.3)
    save_model(tmp_path, net)
    x = _demo(6.0)
    x[2] *= 0.1  # the bass 20 dB down: the normalization raises it, its colour reads the dry as quieter
    y, (frames, (curve, gain), stats) = _stream_demo(
        tmp_path, x, lambda s: (s.analysis._frames, s.analysis._norm_in_force(), s.stats()))
    b = curve.shape[1]
    assert np.isfinite(y).all() and stats["decisions"] >= 1 and frames.shape[1] == 3 * b
    np.testing.assert_allclose(frames[:, 2 * b :, -1], -(curve + gain[:, None]) / 20.0, atol=1e-5)
    assert float(frames[2, 2 * b :, -1].mean()) < float(frames[0, 2 * b :, -1].mean()) - 0.5  # bass: 10+ dB more raised


def test_a_levelled_bus_eq_mixer_streams_the_recordings_at_their_class_loudness(tmp_path):
    """A mixer that renders the levelled recordings and EQs its class buses: the chain gets no normalization
    curve, the loudness stage's gain (class target over the track's own loudness, within 1.5 dB of the offline
    meter's figure) and, per track, the console curve plus its class bus's curve toward the profile target."""
    from fxmix.dsp.profile import load_profile
    from fxmix.model.config import MixerConfig
    from fxmix.model.mixer import ConsoleMixer
    from fxmix.model.states import save_model

    torch.manual_seed(0)
    net = ConsoleMixer(MixerConfig(conv_channels=8, d_model=16, n_heads=2, n_layers=1, ff_size=16, colour=True,
                                   render_levelled=True, bus_eq=True))
    save_model(tmp_path, net)
    x = _demo(6.0)
    x[2] *= 0.1
    def inspect(s):
        an = s.analysis
        curve, gain = an._rendered()
        return curve, gain, an.console, an._bus_curves(an.console, console_curve_on_grid(an.console["eq_db"]), gain), \
            an._designed.copy()

    y, (curve, gain, p, bus, designed) = _stream_demo(tmp_path, x, inspect)
    prof = load_profile("musdb18-reference")
    offline = np.array([prof.targets_for(c).loudness_lufs - integrated_loudness(x[i], SR)
                        for i, c in enumerate(CLASSES)])
    assert np.isfinite(y).all() and not curve.any()
    np.testing.assert_allclose(gain, offline, atol=1.5)
    assert np.abs(bus).max() > 1.0  # the buses are EQ'd
    np.testing.assert_allclose(designed, console_curve_on_grid(p["eq_db"]) + bus, atol=0.6)  # EQ deadband
