"""`fxmix preset export --decisions`: the final per-track decisions (normalization, then the mixer) as chains."""

import json

import numpy as np
import pytest
import soundfile as sf
from fxmix.model.console.designs import pan_gains
from fxmix.plugin_presets.rfxchain import JSFX
from support import signals

from fxmix.cli import main

SR = signals.SR


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two tracks mixed by the console mixer: decisions.json next to the mix."""
    d = tmp_path_factory.mktemp("song")
    song = signals.song(2.0)
    sf.write(d / "Lead Vox.wav", (song["vocals"] * 0.2).T, SR, subtype="FLOAT")
    sf.write(d / "Bass DI.wav", song["bass"].T, SR, subtype="FLOAT")
    out = tmp_path_factory.mktemp("out") / "mix.wav"
    assert main(["-q", "mix", str(d), "-o", str(out), "--model", "console"]) == 0
    return out.with_suffix(".decisions.json")


def test_export_writes_normalization_then_mixer_per_track(mixed, tmp_path, capsys):
    out = tmp_path / "presets"
    assert main(["-q", "preset", "export", "--decisions", str(mixed), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(mixed.read_text())
    for t in doc["tracks"]:
        name = t["name"].replace(" ", "_")
        text = (out / f"{name}.RfxChain").read_text()
        paths = [ln.split('"')[1] for ln in text.splitlines() if ln.startswith("<JS ")]
        # the class-bus stages of a console that has them, last: the exciter (where its class's is on), the bus EQ
        excited = (doc.get("exciter_db") or {}).get(t["class"]) is not None and t["mixer"].get("exciter")
        bus = ("exciter",) * bool(excited) + (("peq",) if doc.get("bus_eq_db") else ())
        assert paths == [JSFX[k][0] for k in ("peq", "comp", "utility") * 2 + bus]
        exported = json.loads((out / f"{name}.decisions.json").read_text())
        mixer = exported["jsfx_sliders"]["mixer"]
        m = t["mixer"]
        # the mixer's utility: the console's pan as channel gains and its fader (+ master)
        left, right = pan_gains(m["pan"])
        assert mixer["utility"][:3] == pytest.approx(
            [20 * np.log10(left), 20 * np.log10(right), m["gain_db"] + doc["master_gain_db"]], abs=1e-6)
        assert mixer["comp"][2:] == pytest.approx([m["comp_ratio"], m["comp_attack_ms"], m["comp_release_ms"]])
        # the normalization's loudness gain and compressor come first, as decided on the track
        norm = exported["jsfx_sliders"]["normalization"]
        if "compression" in t["normalization"]:
            assert norm["comp"][1:3] == pytest.approx([t["normalization"]["compression"]["threshold_db"],
                                                       t["normalization"]["compression"]["ratio"]])
        else:  # a console that renders the levelled recordings: the loudness stage's gain alone
            assert doc["stages"] == ["loudness"] and norm["comp"][2] == 1.0
            assert norm["utility"][2] == pytest.approx(t["normalization"]["loudness"]["gain_db"], abs=1e-6)
        if "peq" in bus:
            assert exported["jsfx_sliders"]["bus"]["peq"] and len(exported["jsfx_sliders"]["bus"]["peq"]) == JSFX["peq"][1]
        lines = text.splitlines()
        last_utility = [k for k, ln in enumerate(lines) if ln == f'<JS "{JSFX["utility"][0]}" ""'][-1]
        values = [float(v) for v in lines[last_utility + 1].split() if v != "-"]
        assert values == pytest.approx(mixer["utility"], abs=1e-6)  # the chain file holds the same values
    assert (out / "Effects" / "fxmix" / "fxmix_peq.jsfx").is_file()
    # the master stage: its chain for the master track, with the plan's values
    text = (out / "fxmix-master.RfxChain").read_text()
    assert [ln.split('"')[1] for ln in text.splitlines() if ln.startswith("<JS ")] == [
        JSFX[k][0] for k in ("comp", "utility", "limiter")]
    exported = json.loads((out / "fxmix-master.decisions.json").read_text())
    plan = doc["master"]
    assert exported["master"] == plan and exported["jsfx_sliders"]["limiter"] == [plan["ceiling_dbtp"], 5.0]
    assert exported["jsfx_sliders"]["utility"][2] == pytest.approx(plan["gain_db"] - exported["jsfx_sliders"]["comp"][0])
    assert (out / "Effects" / "fxmix" / "fxmix_limiter.jsfx").is_file()
    assert "fxmix-master.RfxChain is the master stage" in printed


def test_export_refuses_what_is_not_a_decisions_document(tmp_path, capsys):
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps({"format": "other"}))
    assert main(["preset", "export", "--decisions", str(bad), "-o", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "d.json" in err and "fxmix-decisions-1" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
