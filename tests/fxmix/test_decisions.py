"""Per-track decisions: `fxmix mix --model console` on N tracks, decisions.json, the bus networks' per-band
contribution gains, and the library call."""

import json

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp.audio import read_audio
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stages.master import master
from fxmix.model.console import render_console_pedalboard
from fxmix.model.decisions import DECISIONS_FORMAT, bus_band_gains, read_decisions, track_names
from fxmix.model.losses import CONTRIB_BAND_EDGES_HZ
from fxmix.model.names import packaged_kind
from fxmix.model.runtime import resolve_model
from support import signals

import fxmix
from fxmix.cli import main

SR = signals.SR


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory):
    """Five tracks, two of them drums and two 'other', at levels far from their class targets."""
    d = tmp_path_factory.mktemp("session")
    song = signals.song(3.0)
    tracks = {
        "Kick In": song["drums"] * 0.05,
        "Overheads": signals.drums(3.0, seed=7) * 0.8,
        "Lead Vox": song["vocals"] * 0.3,
        "Bass DI": song["bass"],
        "Gtr L": song["other"] * 0.1,
    }
    for name, x in tracks.items():
        sf.write(d / f"{name}.wav", x.T, SR, subtype="FLOAT")
    return d


@pytest.fixture(scope="module")
def console_mix(session_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    norm = out / "norm"
    assert main(["-q", "mix", str(session_dir), "-o", str(out / "mix.wav"), "--model", "console",
                 "--save-normalized", str(norm)]) == 0
    return out, norm


def test_console_mix_normalizes_every_track_and_writes_its_decisions(console_mix, session_dir):
    out, norm = console_mix
    doc = read_decisions(out / "mix.decisions.json")
    assert doc["format"] == DECISIONS_FORMAT and doc["mixer"] == "console"
    names = [t["name"] for t in doc["tracks"]]
    assert sorted(names) == sorted(p.stem for p in session_dir.glob("*.wav"))
    classes = {t["name"]: t["class"] for t in doc["tracks"]}
    assert classes["Kick In"] == classes["Overheads"] == "drums" and classes["Lead Vox"] == "vocals"
    prof = load_profile(doc["profile"])
    for t in doc["tracks"]:
        assert t["normalization"]["scope"] == "track"
        # every track on its own reached its class target, whatever its recorded level
        lufs = integrated_loudness(read_audio(norm / f"{t['name']}.wav").audio, SR)
        assert abs(lufs - prof.targets[t["class"]].loudness_lufs) < 1.0, t["name"]
        assert -36 <= t["mixer"]["gain_db"] <= 12 and -1 <= t["mixer"]["pan"] <= 1 and len(t["mixer"]["eq_db"]) == 10
    # recorded far apart, normalized alike: each track on its own, not summed into its class first
    lufs_in = {n: integrated_loudness(read_audio(session_dir / f"{n}.wav").audio, SR) for n in ("Kick In", "Overheads")}
    lufs_out = {n: integrated_loudness(read_audio(norm / f"{n}.wav").audio, SR) for n in ("Kick In", "Overheads")}
    assert lufs_in["Overheads"] - lufs_in["Kick In"] > 15 and abs(lufs_out["Overheads"] - lufs_out["Kick In"]) < 1.0


def test_console_decisions_render_the_written_mix(console_mix):
    """decisions.json is complete: the tracks the console rendered (saved as the normalized tracks) through its
    console decisions, class-bus stages (curves, exciter levels, transient cut) and master plan give mix.wav."""
    out, norm = console_mix
    doc = read_decisions(out / "mix.decisions.json")
    tracks = np.stack([read_audio(norm / f"{t['name']}.wav").audio for t in doc["tracks"]])
    console = {"master_gain_db": doc["master_gain_db"],
               "tracks": [dict(t["mixer"], name=t["name"]) for t in doc["tracks"]]}
    again = master(render_console_pedalboard(tracks, console, SR, classes=[t["class"] for t in doc["tracks"]],
                                             bus_eq=doc.get("bus_eq_db"), exciter=doc.get("exciter_db"),
                                             transient=doc.get("transient_cut_db")), dict(doc["master"]), SR)
    mix = read_audio(out / "mix.wav").audio
    assert mix.shape == again.shape
    err = np.max(np.abs(mix - again)) / np.max(np.abs(mix))
    assert err < 1e-3, err
    params = json.loads((out / "mix.params.json").read_text())
    assert params["decisions"] == str(out / "mix.decisions.json") and "decisions" not in params["outputs"]


def test_no_master_writes_the_console_sum(console_mix, session_dir, tmp_path):
    """--no-master: the console's sum as it is (the same decisions), and no master plan in decisions.json."""
    out, _ = console_mix
    assert main(["-q", "mix", str(session_dir), "-o", str(tmp_path / "bare.wav"), "--model", "console",
                 "--no-master"]) == 0
    doc = read_decisions(tmp_path / "bare.decisions.json")
    assert doc["master"] is None
    mastered = read_decisions(out / "mix.decisions.json")
    assert [t["mixer"] for t in doc["tracks"]] == [t["mixer"] for t in mastered["tracks"]]
    bare, mix = read_audio(tmp_path / "bare.wav").audio, read_audio(out / "mix.wav").audio
    assert integrated_loudness(mix, SR) - integrated_loudness(bare, SR) == pytest.approx(
        mastered["master"]["lufs"] - integrated_loudness(bare, SR), abs=0.1)
    assert abs(integrated_loudness(mix, SR) - mastered["master"]["target_lufs"]) < 0.2


def test_song_folder_holds_decisions_next_to_the_mix(session_dir, tmp_path):
    """A four-stem network: per track, its class bus's normalization and per-band contribution to the mix."""
    assert main(["-q", "mix", str(session_dir), "-o", str(tmp_path / "out"), "--model", "default"]) == 0
    folder = tmp_path / "out" / session_dir.name
    assert sorted(p.name for p in folder.iterdir()) == ["decisions.json", "mix.wav", "params.json"]
    doc = read_decisions(folder / "decisions.json")
    assert doc["mixer"] == "bus" and len(doc["tracks"]) == 5
    assert len(doc["band_edges_hz"]) == len(CONTRIB_BAND_EDGES_HZ)
    by_name = {t["name"]: t for t in doc["tracks"]}
    assert by_name["Kick In"]["normalization"] == by_name["Overheads"]["normalization"]
    assert by_name["Kick In"]["mixer"] == by_name["Overheads"]["mixer"]
    assert by_name["Kick In"]["normalization"]["scope"] == by_name["Kick In"]["mixer"]["scope"] == "class bus"
    for t in doc["tracks"]:
        bands = [g for g in t["mixer"]["band_gain_db"] if g is not None]
        assert len(bands) >= 10 and np.isfinite(t["mixer"]["gain_db"]) and abs(t["mixer"]["gain_db"]) < 40


def test_bus_band_gains_recover_per_band_gains():
    song = signals.song(3.0)
    buses = {c: song[c] for c in ("vocals", "bass", "other")}
    mix = 2.0 * buses["vocals"] + 0.5 * buses["bass"] + buses["other"]
    gains = bus_band_gains(mix, buses)
    assert set(gains) == set(buses)
    for c, want in (("vocals", 6.02), ("bass", -6.02), ("other", 0.0)):
        assert abs(gains[c]["gain_db"] - want) < 0.1, (c, gains[c]["gain_db"])
        assert len(gains[c]["band_gain_db"]) == len(CONTRIB_BAND_EDGES_HZ) - 1
        loud = [g for g in gains[c]["band_gain_db"] if g is not None and abs(g - want) < 0.5]
        assert len(loud) >= 10, (c, gains[c]["band_gain_db"])


def test_read_decisions_refuses_other_documents(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"format": "something-else", "tracks": []}))
    with pytest.raises(ConfigError, match="d.json.*fxmix-decisions-1"):
        read_decisions(p)
    p.write_text(json.dumps({"format": DECISIONS_FORMAT, "mixer": "console",
                             "tracks": [{"name": "a", "class": "bass", "normalization": {}, "mixer": {"gain_db": "x"}}]}))
    with pytest.raises(ConfigError, match=r"tracks\[0\] \(a\)"):
        read_decisions(p)


def test_console_is_a_model_name_everywhere():
    assert packaged_kind("console") == "console"
    runner = resolve_model("Console")
    assert runner.mixes_tracks and "console" in runner.name
    assert track_names(["a/x.wav", "b/x.flac", "c/y.wav"]) == ["x", "x (2)", "y"]


def test_library_call_mixes_tracks_with_the_console(session_dir):
    res = fxmix.automix(session_dir, model="console")
    assert res.document["mixer"] == "console" and len(res.document["tracks"]) == 5
    assert set(res.decisions) == {p.stem for p in session_dir.glob("*.wav")}
    assert res.mix.shape[0] == 2 and np.isfinite(res.mix).all() and np.max(np.abs(res.mix)) > 1e-3
