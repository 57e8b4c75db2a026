"""OSC bridge over real UDP sockets on 127.0.0.1: streamed mix == in-process mix, queries, feedback, CLI."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp.errors import FxmixError
from fxmix.host_bridge.osc.client import BridgeClient, stream_mix
from support import osc as S

from fxmix.bench.bridge import main as bench_bridge_main
from fxmix.verbs.client import main as client_main


def _rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20)


@pytest.fixture
def one_torch_thread():
    """Like `fxmix serve`: one intra-op thread (two OpenMP threads on a busy 2-core box are ~10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("model", "seconds"), [("none", 1.5), ("network", 0.5)])
def test_streamed_mix_equals_in_process_mix(model, seconds, one_torch_thread):
    model = S.small_network() if model == "network" else model
    x = S.stems(seconds)
    ref = S.reference_mix(S.blocks_of(x), model)
    with S.running_server(model) as server, S.open_client(server) as client:
        mix, report = stream_mix(client, x, S.SR, compensate_latency=False, timeout_s=5.0)
        stats = client.query_stats()
    assert report.blocks_lost == 0 and report.blocks_received == x.shape[-1] // S.BLOCK
    assert _rms_db(ref) > -40.0  # a real mix, not silence
    assert np.isfinite(mix).all()
    np.testing.assert_allclose(mix, ref, atol=1e-4, rtol=0)
    assert stats["session"]["zero_filled"] == 0 and stats["errors"] == {}


def test_out_of_order_missing_and_duplicate_blocks():
    x = S.stems(1.0)
    blocks = S.blocks_of(x)
    n = len(blocks)
    rng = np.random.default_rng(1)
    # Messages in sequence order, then shuffled inside groups of 3 blocks (the window is 8).
    msgs = [(seq, track) for seq in range(n) for track in range(len(S.TRACKS))]
    dropped = {(3, 1)} | {(5, t) for t in range(len(S.TRACKS))}  # one track block and one whole block
    msgs = [m for m in msgs if m not in dropped]
    order = []
    for g in range(0, n, 3):
        group = [m for m in msgs if g <= m[0] < g + 3]
        order += [group[i] for i in rng.permutation(len(group))]
    expected_blocks = [b.copy() for b in blocks]
    for seq, track in dropped:
        expected_blocks[seq][track] = 0.0
    ref = S.reference_mix(expected_blocks)
    with S.running_server() as server, S.open_client(server) as client:
        for i, (seq, track) in enumerate(order):
            S.send_track_block(client, seq, track, blocks[seq])
            if i == 40:
                S.send_track_block(client, seq, track, blocks[seq])  # a duplicate
        client.flush()
        mix = S.collect(client, n)
        S.send_track_block(client, n - 2, 0, blocks[n - 2])  # after it was mixed, within the window: late
        stats = client.query_stats()["session"]
    np.testing.assert_allclose(mix, ref, atol=1e-4, rtol=0)
    assert stats["zero_filled"] == len(dropped)
    assert stats["duplicates"] == 1 and stats["late"] == 1 and stats["reordered"] > 0
    assert stats["mixed_blocks"] == n


def test_queries_controls_and_parameter_output():
    reaper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reaper.bind(("127.0.0.1", 0))
    reaper.settimeout(0.05)
    try:
        with (
            S.running_server(reaper_feedback=reaper.getsockname(), params_interval_s=0.0) as server,
            S.open_client(server) as client,
        ):
            latency = client.query_latency()
            state = client.query_state()
            client.control("amount", 0.5)
            client.send("/fxmix/control", 0, "no-such-control", 1.0)
            with pytest.raises(FxmixError, match="no-such-control"):
                client.wait_reply("/fxmix/nothing", 5.0)
            x = S.stems(0.5)
            mix, report = stream_mix(client, x, S.SR, timeout_s=5.0)
            # reset: tails and statistics cleared, sequence numbers restart at 0, the same input gives the same mix
            client.reset()
            again, _ = stream_mix(client, x, S.SR, timeout_s=5.0)
            client.send("/fxmix/profile", 0, "musdb18-reference")
            assert client.wait_reply("/fxmix/latency", 5.0) == [0, latency]
            client.send("/fxmix/profile", 0, "no-such-profile")
            with pytest.raises(FxmixError, match="no-such-profile"):
                client.wait_reply("/fxmix/nothing", 5.0)
            client.send("/fxmix/query/params", 0)
            params = [client.wait_reply("/fxmix/params", 5.0) for _ in S.TRACKS]
            state_after = client.query_state()
            # Reaper's pattern: /track/N/volume/db (dB) and /track/N/pan (0..1), N from 1.
            got = S.reaper_feedback(reaper, 2 * len(S.TRACKS))
    finally:
        reaper.close()
    assert latency == client.latency_samples >= 0
    assert state["n_tracks"] == len(S.TRACKS) and state["tracks"]["0"] == {
        "class_name": "vocals",
        "name": "Lead Vox",
    }
    assert state_after["controls"] == {"amount": 0.5} and state_after["next_seq"] == report.blocks_sent
    assert state_after["profile"] == "musdb18-reference"
    assert report.blocks_lost == 0 and np.isfinite(mix).all() and _rms_db(mix) > -40.0
    np.testing.assert_allclose(again, mix, atol=1e-4, rtol=0)
    for k, p in enumerate(params):
        assert p[0] == 0 and p[1] == k
        decoded = json.loads(p[2])
        assert np.isfinite(decoded["gain_db"]) and -1.0 <= decoded["pan"] <= 1.0
    for k in range(1, len(S.TRACKS) + 1):
        assert np.isfinite(got[f"/track/{k}/volume/db"]) and 0.0 <= got[f"/track/{k}/pan"] <= 1.0


def test_allowlist_rejects_other_senders():
    with S.running_server(allow=["10.9.8.7"]) as server, BridgeClient(*server.address) as client:
        assert not client.ping(timeout_s=0.3)
        assert server.core.errors.snapshot()["denied"] >= 1
    with S.running_server(allow=["127.0.0.0/8"]) as server, BridgeClient(*server.address) as client:
        assert client.ping(timeout_s=2.0)


def test_client_cli_writes_the_mix(tmp_path):
    x = S.stems(1.0)
    paths = []
    for k, (cls, _name) in enumerate(S.TRACKS):
        p = tmp_path / f"{k}_{cls}.wav"
        sf.write(p, x[k].T, S.SR, subtype="FLOAT")
        paths.append(f"{p}={cls}")
    out = tmp_path / "mix.wav"
    with S.running_server() as server:
        rc = client_main([*paths, "--port", str(server.address[1]), "-o", str(out), "--timeout", "5"])
    assert rc == 0
    mix, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == S.SR and mix.shape == (x.shape[-1], 2)
    assert np.isfinite(mix).all() and _rms_db(mix) > -40.0


def test_bench_bridge_runs_a_client_process(capsys, tmp_path):
    out = tmp_path / "bench.json"
    rc = bench_bridge_main(["--seconds", "1", "--tracks", "4", "--model", "none", "--json", str(out)])
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert (
        "blocks sent" in text
        and "p99" in text
        and "server CPU" in text
        and "reproduce: fxmix bench bridge" in text
    )
    assert (
        result["blocks_sent"] == int(1 * 48000 / 512)
        and result["blocks_received"] + result["blocks_lost"] == result["blocks_sent"]
    )
    assert rc == (0 if result["blocks_lost"] == 0 else 1)
    assert result["rtt_p50_ms"] > 0 and result["server_cpu_percent_of_one_core"] > 0


def test_readme_python_osc_example():
    """The README's example session, verbatim apart from the port: plain python-osc, no fxmix client."""
    from pythonosc.osc_message import OscMessage
    from pythonosc.udp_client import SimpleUDPClient

    with S.running_server() as server:
        port = server.address[1]
        # --- README example starts
        osc = SimpleUDPClient("127.0.0.1", port)  # `fxmix serve` is listening there
        osc.send_message("/fxmix/open", [0, 48000, 256, 2])  # session 0: 48 kHz, 256-sample blocks, 2 tracks
        osc.send_message("/fxmix/track", [0, 0, "vocals", "Lead Vox"])
        osc.send_message("/fxmix/track", [0, 1, "bass", "Bass DI"])
        print(OscMessage(osc.receive(10.0)).params)  # /fxmix/opened: [session, latency_samples, 256, 2]
        rng = np.random.default_rng(0)
        for seq in range(50):  # one (2, 256) float32 block per track per DAW buffer
            for track in range(2):
                block = (0.1 * rng.standard_normal((2, 256))).astype("<f4")
                osc.send_message("/fxmix/block", [0, track, seq, block.tobytes()])
            msg = OscMessage(osc.receive(2.0))
            if msg.address == "/fxmix/mix":  # [session, seq, blob]: the mixed block, latency_samples late
                mix = np.frombuffer(msg.params[2], "<f4").reshape(2, 256)
        osc.send_message("/fxmix/close", [0])
        # --- README example ends
        osc.close()
    assert msg.address == "/fxmix/mix" and msg.params[1] == 49
    assert mix.shape == (2, 256) and np.isfinite(mix).all() and np.abs(mix).max() > 0


def test_open_failure_is_reported_and_the_server_keeps_serving():
    with (
        S.running_server(default_profile="no-such-profile") as server,
        BridgeClient(*server.address) as client,
    ):
        with pytest.raises(FxmixError, match="open failed.*no-such-profile"):
            client.open(S.SR, S.BLOCK, 2, timeout_s=10.0)
        client.send("/fxmix/block", 0, 0, 0, bytes(2 * S.BLOCK * 4))  # the session does not exist
        assert client.ping()
        assert server.core.errors.snapshot() == {"engine": 1, "unknown_session": 1}
