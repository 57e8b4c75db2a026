"""Console mixer network: permutation equivariance, padding, neutral start, save/load, ONNX parity and the
inference path (decisions rendered with pedalboard equal the torch console's mix)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyloudnorm
import pytest
import torch
from fxmix.dsp.bands import band_centers_hz
from fxmix.dsp.constants import TRUE_PEAK_CEILING_DB
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.stages.loudness import true_peak_db
from fxmix.dsp.stages.master import MASTER_GLUE_GR_DB, MASTER_LUFS, master
from fxmix.model.config import MixerConfig
from fxmix.model.console import UNIT_SIZE, ConsoleParams, render_console
from fxmix.model.console_runtime import MixerRunner, export_onnx, mix_tracks
from fxmix.model.mixer import (
    COLOUR_MAX,
    ConsoleMixer,
    colour_of,
    colour_to_eq_matrix,
    feature_size,
    onnx_inputs,
    predict_units,
    track_features,
    unit_slice,
)
from fxmix.model.params import count_parameters
from fxmix.model.states import load_model, save_model
from fxmix.training.console_train import init_weights
from support import signals

SR = signals.SR


def _trained_like(seed: int = 0) -> ConsoleMixer:
    """A network whose heads are not zero (a fresh one outputs the neutral console everywhere)."""
    torch.manual_seed(seed)
    net = ConsoleMixer(MixerConfig(conv_channels=16, d_model=32, n_heads=4, n_layers=2, ff_size=32))
    for head in (net.track_head, net.master_head[-1]):
        torch.nn.init.normal_(head.weight, std=0.3)
    return net.eval()


def _session(seconds: float = 1.0) -> list[tuple[str, str, np.ndarray]]:
    s = signals.song(seconds)
    return [(f"{i:02d}_{c}", c, 0.1 * s[c]) for i, c in enumerate(("vocals", "drums", "bass", "other"))]


def test_permuting_tracks_permutes_the_outputs():
    net = _trained_like()
    feats, idx, mask = onnx_inputs(batch=2, tracks=5, frames=12)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        u, m = net(feats, idx, mask)
        up, mp = net(feats[:, perm], idx[:, perm], mask[:, perm])
    assert u.abs().max() > 0.1
    torch.testing.assert_close(up, u[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mp, m, atol=1e-5, rtol=1e-5)


def test_padding_tracks_change_nothing():
    net = _trained_like(1)
    feats, idx, mask = onnx_inputs(batch=1, tracks=3, frames=10)
    pad_feats = torch.cat([feats, torch.randn(1, 2, feats.shape[2], 10)], dim=1)
    pad_idx = torch.cat([idx, torch.zeros(1, 2, dtype=torch.int64)], dim=1)
    pad_mask = torch.cat([mask, torch.zeros(1, 2)], dim=1)
    with torch.no_grad():
        u, m = net(feats, idx, mask)
        up, mp = net(pad_feats, pad_idx, pad_mask)
    torch.testing.assert_close(up[:, :3], u, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mp, m, atol=1e-5, rtol=1e-5)


def test_fresh_network_is_the_neutral_console_and_small():
    net = ConsoleMixer()
    assert count_parameters(net) <= 2_000_000
    audio = torch.from_numpy(np.stack([a for _, _, a in _session(0.5)]))[None]
    with torch.no_grad():
        u, m = predict_units(net, audio, [["vocals", "drums", "bass", "other"]])
    assert u.shape == (1, 4, UNIT_SIZE) and float(u.abs().max()) == 0.0 and float(m.abs().max()) == 0.0


def test_features_follow_level_and_stereo():
    x = torch.from_numpy(signals.noise(0.5, seed=4))[None]
    cfg = MixerConfig()
    f1, f2 = track_features(x, cfg), track_features(2.0 * x, cfg)
    assert f1.shape[1] == feature_size()
    np.testing.assert_allclose((f2 - f1).numpy(), np.log10(2.0), atol=1e-4)  # dB/20 of +6.02 dB
    mono = torch.from_numpy(signals.noise(0.5, seed=4, channels=1).repeat(2, axis=0))[None]
    side = track_features(mono, cfg)[0, feature_size() // 2 :]
    assert float(side.max()) < -4.0  # identical channels: side at the -100 dB floor


def test_save_load_and_onnx_parity(tmp_path):
    net = _trained_like(2)
    save_model(tmp_path, net)
    loaded, sidecar = load_model(tmp_path)
    assert sidecar["arch"] == "console"
    export_onnx(loaded, tmp_path / "model.onnx")
    feats, idx, mask = onnx_inputs(batch=2, tracks=7, frames=31)  # other sizes than the export's
    mask[1, 4:] = 0.0
    eager = MixerRunner(tmp_path, backend="eager")
    onnx = MixerRunner(tmp_path, backend="onnx")
    ue, me = eager(feats.numpy(), idx.numpy(), mask.numpy())
    uo, mo = onnx(feats.numpy(), idx.numpy(), mask.numpy())
    np.testing.assert_allclose(uo, ue, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(mo, me, atol=1e-4, rtol=1e-4)


def test_mix_tracks_renders_the_decisions_like_the_torch_console(tmp_path):
    save_model(tmp_path, _trained_like(3))
    tracks = _session(1.0)
    mix, decisions = mix_tracks(tracks, tmp_path, master=False)
    assert decisions["master"] is None
    assert [t["name"] for t in decisions["tracks"]] == [t[0] for t in tracks]
    params = ConsoleParams.from_dict(decisions)
    audio = torch.from_numpy(np.stack([a for _, _, a in tracks]))[None]
    ref = render_console(audio, params)[0].numpy()
    meter = pyloudnorm.Meter(SR)
    lufs, ref_lufs = meter.integrated_loudness(mix.T), meter.integrated_loudness(ref.T)
    assert abs(lufs - ref_lufs) < 0.1
    assert abs(decisions["master_gain_db"]) > 0.01  # the network decided something


def test_mastered_mix_reaches_the_master_target_and_its_plan_replays(tmp_path):
    save_model(tmp_path, _trained_like(3))
    tracks = _session(3.0)
    raw, _ = mix_tracks(tracks, tmp_path, master=False)
    mix, decisions = mix_tracks(tracks, tmp_path)
    plan = decisions["master"]
    assert plan["target_lufs"] == MASTER_LUFS
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(mix.T) - MASTER_LUFS) < 0.2
    assert true_peak_db(mix) <= TRUE_PEAK_CEILING_DB + 0.05
    peak_db = 20 * np.log10(np.max(np.abs(raw)))
    assert plan["glue_threshold_db"] == pytest.approx(peak_db - 2 * MASTER_GLUE_GR_DB, abs=1e-3)
    np.testing.assert_array_equal(master(raw, dict(plan), SR), mix)  # the recorded plan replays the mix


def test_mix_tracks_refuses_unclassed_or_ragged_tracks(tmp_path):
    save_model(tmp_path, _trained_like(4))
    tracks = _session(0.3)
    with pytest.raises(ConfigError, match="no class"):
        mix_tracks([(tracks[0][0], "piano", tracks[0][2])], tmp_path)
    with pytest.raises(ConfigError, match="one length"):
        mix_tracks([tracks[0], (tracks[1][0], tracks[1][1], tracks[1][2][:, :100])], tmp_path)


def _colour_net(seed: int = 5) -> ConsoleMixer:
    torch.manual_seed(seed)
    net = ConsoleMixer(MixerConfig(conv_channels=16, d_model=32, n_heads=4, n_layers=2, ff_size=32, colour=True,
                                 colour_eq=True))
    for head in (net.track_head, net.master_head[-1]):
        torch.nn.init.normal_(head.weight, std=0.3)
    return net.eval()


def test_colour_is_what_the_normalization_changed_per_band():
    cfg = MixerConfig()
    dry = torch.from_numpy(signals.noise(1.0, seed=6))
    louder = 2.0 * dry  # a normalization that raised the track by 6.02 dB
    c = colour_of(dry, louder, cfg)
    assert c.shape == (len(band_centers_hz()),)
    np.testing.assert_allclose(c.numpy(), -np.log10(2.0), atol=1e-4)
    assert float(colour_of(dry, dry, cfg).abs().max()) < 1e-6
    silent = torch.zeros_like(dry)
    assert float(colour_of(dry, silent, cfg).max()) == COLOUR_MAX  # bounded however much was taken away
    feats = track_features(dry[None], MixerConfig(colour=True), c[None])
    assert feats.shape[1] == feature_size(MixerConfig(colour=True)) == 3 * len(band_centers_hz())
    np.testing.assert_allclose(feats[0, 2 * len(band_centers_hz()):].numpy(), c[:, None].expand(-1, feats.shape[-1]))


def test_colour_network_started_from_a_colourless_one_decides_the_same(tmp_path):
    old = _trained_like(6)
    save_model(tmp_path, old)
    cfg = dataclasses.replace(old.config, colour=True)
    new = ConsoleMixer(cfg).eval()
    init_weights(new, tmp_path)
    audio = torch.from_numpy(np.stack([a for _, _, a in _session(0.5)]))[None]
    classes = [["vocals", "drums", "bass", "other"]]
    colour = torch.randn(1, 4, len(band_centers_hz()))
    with torch.no_grad():
        u0, m0 = predict_units(old, audio, classes)
        u1, m1 = predict_units(new, audio, classes, colour=colour)
    torch.testing.assert_close(u1, u0, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(m1, m0, atol=1e-6, rtol=1e-6)
    with pytest.raises(ConfigError, match="cannot start"):
        init_weights(ConsoleMixer(dataclasses.replace(cfg, conv_channels=8)), tmp_path)
    # a console that renders other tracks starts its EQ neutral and keeps every other decision
    levelled = ConsoleMixer(dataclasses.replace(cfg, render_levelled=True, bus_eq=True)).eval()
    init_weights(levelled, tmp_path, neutral=("eq_db",))
    with torch.no_grad():
        u2, m2 = predict_units(levelled, audio, classes, colour=colour)
    eq = unit_slice("eq_db")
    assert not u2[..., eq].any() and u0[..., eq].abs().max() > 0.1
    keep = torch.ones(u0.shape[-1], dtype=torch.bool)
    keep[eq] = False
    torch.testing.assert_close(u2[..., keep], u0[..., keep], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="no parameter"):
        init_weights(levelled, tmp_path, neutral=("eq",))


def test_colour_network_reads_the_dry_tracks_and_exports(tmp_path):
    save_model(tmp_path, _colour_net())
    tracks = _session(1.0)
    dry = [a for _, _, a in tracks]
    norm = [(n, c, a * 0.5) for n, c, a in tracks]  # as if the normalization took 6 dB off every track
    _, with_dry = mix_tracks(norm, tmp_path, master=False, dry=dry)
    _, without = mix_tracks(norm, tmp_path, master=False)
    assert with_dry["tracks"][0]["gain_db"] != pytest.approx(without["tracks"][0]["gain_db"], abs=1e-3)
    with pytest.raises(ConfigError, match="one dry track per track"):
        mix_tracks(norm, tmp_path, dry=dry[:2])
    export_onnx(load_model(tmp_path)[0], tmp_path / "model.onnx")
    feats, idx, mask = onnx_inputs(_colour_net().config, batch=1, tracks=4, frames=9)
    ue, me = MixerRunner(tmp_path, backend="eager")(feats.numpy(), idx.numpy(), mask.numpy())
    uo, mo = MixerRunner(tmp_path, backend="onnx")(feats.numpy(), idx.numpy(), mask.numpy())
    np.testing.assert_allclose(uo, ue, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(mo, me, atol=1e-4, rtol=1e-4)


def test_colour_eq_starts_each_track_from_its_own_timbre():
    """A fresh colour_eq network decides the EQ that gives each track back what the normalization took (on the
    EQ's octaves) at the normalized track's loudness, and the neutral console for a track the normalization
    left alone."""
    import scipy.signal
    from fxmix.model.console import eq_fir

    cfg = MixerConfig(conv_channels=8, d_model=16, n_heads=2, n_layers=1, ff_size=16, colour=True, colour_eq=True)
    net = ConsoleMixer(cfg).eval()
    f = band_centers_hz()
    took = np.where(f >= 1000.0, 6.0, 0.0)  # the normalization cut 6 dB above 1 kHz: the EQ gives it back
    audio = np.stack([a for _, _, a in _session(3.0)])[[0, 2]]  # vocals, bass
    colour = torch.tensor(np.stack([took, np.zeros_like(took)]) / 20.0, dtype=torch.float32)[None]
    with torch.no_grad():
        u, m = predict_units(net, torch.from_numpy(audio)[None], [["vocals", "bass"]], colour=colour)
    eq = ConsoleParams.from_unit(u, [["vocals", "bass"]], master_u=m).eq_db[0].numpy()
    octave = took @ colour_to_eq_matrix()
    np.testing.assert_allclose(eq[0] - eq[0].mean(), octave - octave.mean(), atol=1e-3)  # the timbre back
    assert eq[0][-1] - eq[0][0] > 5.0
    meter = pyloudnorm.Meter(SR)
    y = np.stack([scipy.signal.fftconvolve(ch, eq_fir(eq[0], SR), mode="same") for ch in audio[0]])
    assert abs(meter.integrated_loudness(y.T) - meter.integrated_loudness(audio[0].T)) < 0.3  # the level kept
    np.testing.assert_allclose(eq[1], 0.0, atol=1e-5)
    with pytest.raises(ConfigError, match="colour_eq needs colour"):
        MixerConfig(colour_eq=True)


def test_colour_mixer_takes_mono_and_silent_tracks_through_automix(tmp_path):
    """The dry tracks a colour mixer reads may be mono ((n,) or (1, n)) or silent, as the normalizer accepts."""
    from fxmix.model.automix import automix_tracks

    save_model(tmp_path, _colour_net())
    s = signals.song(2.0)
    tracks = [("vox", "vocals", 0.1 * s["vocals"][0]), ("bass", "bass", 0.1 * s["bass"][:1]),
              ("gtr", "other", 0.1 * s["other"]), ("kit", "drums", np.zeros_like(s["drums"]))]
    res = automix_tracks(tracks, model=MixerRunner(tmp_path))
    assert res.mix.shape == (2, s["vocals"].shape[-1]) and np.isfinite(res.mix).all() and np.abs(res.mix).max() > 0


def test_levelled_bus_eq_mixer_renders_the_recordings_and_records_its_bus_curves(tmp_path):
    """A mixer with ``render_levelled`` and ``bus_eq``: automix_tracks renders each dry track levelled to its class
    loudness (not the normalized one), the decisions carry the class-bus curves and replay the mix, and the DAW
    chains carry each track's class-bus EQ as a PEQ fit of its curve; mix_tracks without the levelled tracks
    refuses it by name."""
    from fxmix.dsp.errors import ConfigError
    from fxmix.model.automix import automix_tracks
    from fxmix.model.console import ConsoleParams, eq_band_centers_hz, render_console_pedalboard
    from fxmix.model.decisions import build_decisions
    from fxmix.plugin_presets.export import track_chains

    torch.manual_seed(2)
    net = ConsoleMixer(MixerConfig(conv_channels=16, d_model=32, n_heads=4, n_layers=2, ff_size=32, colour=True,
                                   render_levelled=True, bus_eq=True))
    save_model(tmp_path, net.eval())
    runner = MixerRunner(tmp_path)
    tracks = _session(2.0)
    res = automix_tracks(tracks, model=runner, master=False)
    doc = res.console
    assert doc["render_input"] == "levelled" and set(doc["bus_eq_db"]) == {"vocals", "drums", "bass", "other"}
    assert any(abs(v) > 1.0 for g in doc["bus_eq_db"].values() for v in g)  # the buses were EQ'd
    # a neutral network: the mix is the levelled tracks' sum through the bus EQ (and the neutral console)
    lv = np.stack([res.normalized[n] for n, _, _ in tracks])
    assert all("eq_db" not in (res.params[n] or {}) for n, _, _ in tracks)  # loudness stage only
    replay = render_console_pedalboard(lv, ConsoleParams.from_dict(doc), classes=[c for _, c, _ in tracks],
                                       bus_eq=doc["bus_eq_db"])
    assert np.abs(replay - res.mix).max() < 1e-5
    with pytest.raises(ConfigError, match="levelled"):
        mix_tracks([(n, c, x) for n, c, x in tracks], tmp_path, runner=runner, dry=[x for _, _, x in tracks])
    names = [n for n, _, _ in tracks]
    classes = {n: c for n, c, _ in tracks}
    decisions = build_decisions(res, dict.fromkeys(names), classes)
    assert decisions["stages"] == ["loudness"]  # what the rendered tracks had
    chains = track_chains(decisions, {n: x for n, _, x in tracks})
    f = eq_band_centers_hz()[1:-1]  # inside the fit's range
    for n in names:
        bus = chains[n][1].bus_eq
        want = np.asarray(doc["bus_eq_db"][classes[n]])[1:-1]
        assert bus is not None and np.abs(bus.response_db(f, 44100) - want).max() < 1.5, n
        assert "peq" in chains[n][1].bus_sliders()


def test_class_bus_stages_replay_from_the_decisions_and_are_named_where_a_daw_lacks_them(tmp_path):
    """A mixer with the fine bus EQ, the exciter and the transient cut: the decisions carry what was measured
    (the bus curves on the grid with their frequencies, the exciter levels, the transient depths) and replay the
    mix; the DAW chains fit the fine curves as PEQs and carry the exciter, and the REAPER and preset notes name
    the stage that has no plug-in there (the transient cut)."""
    from fxmix.dsp.bands import band_centers_hz
    from fxmix.model.automix import automix_tracks
    from fxmix.model.console import ConsoleParams, render_console_pedalboard
    from fxmix.model.decisions import build_decisions
    from fxmix.plugin_presets.export import track_chains

    from fxmix.decisions import unwritten_bus_stages

    torch.manual_seed(3)
    net = ConsoleMixer(MixerConfig(conv_channels=16, d_model=32, n_heads=4, n_layers=2, ff_size=32, colour=True,
                                   render_levelled=True, bus_eq=True, bus_eq_fine=True, exciter=True,
                                   transient=True))
    save_model(tmp_path, net.eval())
    tracks = _session(2.0)
    res = automix_tracks(tracks, model=MixerRunner(tmp_path), master=False)
    doc = res.console
    assert doc["bus_eq_hz"] == [round(float(f), 3) for f in band_centers_hz()]
    assert all(len(g) == band_centers_hz().size for g in doc["bus_eq_db"].values())
    assert set(doc["exciter_db"]) == set(doc["transient_cut_db"]) == {"vocals", "drums", "bass", "other"}
    lv = np.stack([res.normalized[n] for n, _, _ in tracks])
    replay = render_console_pedalboard(lv, ConsoleParams.from_dict(doc), classes=[c for _, c, _ in tracks],
                                       bus_eq=doc["bus_eq_db"], exciter=doc["exciter_db"],
                                       transient=doc["transient_cut_db"])
    assert np.abs(replay - res.mix).max() < 1e-5
    without = render_console_pedalboard(lv, ConsoleParams.from_dict(doc), classes=[c for _, c, _ in tracks],
                                        bus_eq=doc["bus_eq_db"])
    assert np.abs(without - res.mix).max() > 1e-3  # the exciter and the transient cut are at work
    names = [n for n, _, _ in tracks]
    classes = {n: c for n, c, _ in tracks}
    decisions = build_decisions(res, dict.fromkeys(names), classes)
    assert decisions["bus_eq_hz"] == doc["bus_eq_hz"] and decisions["transient_cut_db"] == doc["transient_cut_db"]
    chains = track_chains(decisions, {n: x for n, _, x in tracks})
    assert all(chains[n][1].bus_eq is not None for n in names)
    excited = [n for n in names if doc["exciter_db"][classes[n]] is not None]
    assert excited and all("exciter" in chains[n][1].bus_sliders() for n in excited)
    notes = unwritten_bus_stages(decisions)
    assert any("transient cut" in n for n in notes) and not any("exciter" in n for n in notes)
    for t in decisions["tracks"]:  # a document without the tracks' exciter gains names the exciter as not written
        t["mixer"].pop("exciter", None)
    assert any("exciter" in n for n in unwritten_bus_stages(decisions))
