"""`fxmix reaper render --write-rpp`: every mixed track's decisions (VOLPAN volume and pan, an FX chain of fxmix
JSFX) written into the copy, read back by `fxmix reaper inspect` and by the independent `rpp` parser."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rpp  # the independent RPP parser from PyPI (the test extra)
import soundfile as sf
from fxmix.host_bridge.reaper import (
    FXMIX_TRACK_NAME,
    TrackSettings,
    balance_gains,
    read_project,
    track_gains,
    volpan_from_gains,
    write_project_copy,
)
from fxmix.model.console.designs import pan_gains
from fxmix.model.decisions import read_decisions
from fxmix.plugin_presets.master import master_sliders
from fxmix.plugin_presets.rfxchain import JSFX
from support import signals

from fxmix.verbs.reaper import main as reaper_main

SR = 44100
_JS = {v[0]: k for k, v in JSFX.items()}


def _track(name: str, file: str | None, vol: float = 0.8, pan: float = 0.0, isbus: str = "0 0",
           mutesolo: str = "0 0 0", fx: str = "") -> str:
    item = ""
    if file:
        item = (f"    <ITEM\n      POSITION 0\n      LENGTH 2\n      LOOP 0\n      MUTE 0 0\n      VOLPAN 1 0 1 -1\n"
                f'      SOFFS 0\n      <SOURCE WAVE\n        FILE "{file}"\n      >\n    >\n')
    return (f'  <TRACK\n    NAME "{name}"\n    VOLPAN {vol} {pan} -1 -1 1\n    MUTESOLO {mutesolo}\n'
            f"    ISBUS {isbus}\n{fx}{item}  >\n")


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    """A panned folder of two drum tracks, a guitar panned left with its own FX chain, a muted track (few tracks:
    each normalization EQ's parametric fit costs seconds of CPU, more on spiky curves such as pure tones)."""
    tmp_path = tmp_path_factory.mktemp("reaper")
    media = tmp_path / "song" / "Audio"
    media.mkdir(parents=True)
    for name, x in [("kick", signals.drums(2.0, seed=1) * 0.5), ("snare", signals.drums(2.0, seed=5) * 0.05),
                    ("gtr", signals.other(2.0) * 0.1)]:
        sf.write(str(media / f"{name}.wav"), x.T.astype(np.float32), SR, subtype="FLOAT")
    own_fx = ('    <FXCHAIN\n      SHOW 0\n      LASTSEL 0\n      DOCKED 0\n      BYPASS 0 0 0\n'
              '      <JS "utility/volume" ""\n        -3 - - -\n      >\n      FLOATPOS 0 0 0 0\n'
              "      FXID {00000000-0000-0000-0000-000000000001}\n      WAK 0 0\n    >\n")
    text = (
        '<REAPER_PROJECT 0.1 "7.0/linux-x86_64" 1700000000\n  SAMPLERATE 44100 0 0\n'
        + _track("Drums", None, vol=0.5, pan=0.2, isbus="1 1")
        + _track("Kick", "Audio/kick.wav")
        + _track("Snare", "Audio/snare.wav", isbus="2 -1")
        + _track("Gtr", "Audio/gtr.wav", vol=1.2, pan=-0.5, fx=own_fx)
        + _track("Scratch", "Audio/gtr.wav", mutesolo="1 0 0")
        + ">\n"
    )
    path = tmp_path / "song" / "song.RPP"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def written(session: Path, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("written")
    out = tmp_path / "render" / "mix.wav"
    copy = tmp_path / "render" / "song-fxmix.RPP"
    assert reaper_main(["render", str(session), "-o", str(out), "--model", "console", "--write-rpp", str(copy)]) == 0
    return session, out, copy


def _fxmix_sliders(fx) -> list[tuple[str, list[float]]]:
    return [(_JS[f.name], list(f.sliders)) for f in fx if f.kind == "JS" and f.name in _JS]


def test_written_copy_carries_each_tracks_decisions(written):
    session, out, copy = written
    decisions = read_decisions(out.with_suffix(".decisions.json"))
    assert decisions["mixer"] == "console"
    assert sorted(t["name"] for t in decisions["tracks"]) == ["Gtr", "Kick", "Snare"]
    original, back = read_project(session), read_project(copy)
    assert [t.name for t in back.tracks] == [t.name for t in original.tracks] + [FXMIX_TRACK_NAME]
    assert back.tracks[-1].muted and not back.tracks[-1].solo  # the tracks play the decisions
    for d in decisions["tracks"]:
        i = d["reaper_track"] - 1
        t = back.tracks[i]
        m = d["mixer"]
        # VOLPAN: the console's fader (+ master) and constant-power pan as the project's balance pan
        want = 10 ** ((m["gain_db"] + decisions["master_gain_db"]) / 20) * np.array(pan_gains(m["pan"]))
        assert t.volume * balance_gains(t.pan) == pytest.approx(want, rel=1e-9)
        chain = _fxmix_sliders(t.fx)
        bus = ["peq"] if decisions.get("bus_eq_db") else []  # the class-bus EQ of a console that has one
        assert [k for k, _ in chain] == ["utility", "peq", "comp", "utility", "peq", "comp", *bus]
        # first: the gains fxmix rendered the track with (own and folder volume and pan)
        head = np.abs(track_gains(original, i))
        assert chain[0][1][:2] == pytest.approx(list(20 * np.log10(head)), abs=1e-6)
        # last: the mixer's compressor as decided (threshold at most 0 dB: the JSFX's bypass)
        assert chain[5][1][1:] == pytest.approx([min(m["comp_threshold_db"], 0.0), m["comp_ratio"],
                                                 m["comp_attack_ms"], m["comp_release_ms"]], abs=1e-6)
        if "compression" in d["normalization"]:
            norm = d["normalization"]["compression"]
            assert chain[2][1][1:3] == pytest.approx([norm["threshold_db"], norm["ratio"]], abs=1e-6)
        else:  # a console that renders the levelled recordings: the loudness stage's gain alone
            assert decisions["stages"] == ["loudness"] and chain[2][1][2] == 1.0
            assert chain[3][1][2] == pytest.approx(d["normalization"]["loudness"]["gain_db"], abs=1e-6)
    drums = back.tracks[0]
    assert drums.volume == 1.0 and drums.pan == 0.0 and not drums.fx  # its gains moved into its children
    gtr = back.tracks[3]
    assert gtr.fx[0].name == "utility/volume" and len(gtr.fx) == 7 + len(bus)  # the track's own FX kept, ours after
    assert back.tracks[4].fx == () and back.tracks[4].volume == pytest.approx(0.8)  # muted: untouched


def test_inspect_and_the_rpp_package_read_the_same_decisions(written, capsys):
    _, out, copy = written
    decisions = read_decisions(out.with_suffix(".decisions.json"))
    capsys.readouterr()
    assert reaper_main(["inspect", str(copy)]) == 0
    listing = capsys.readouterr().out
    tree = rpp.loads(copy.read_text(encoding="utf-8"))
    tracks = tree.findall("TRACK")
    for d in decisions["tracks"]:
        i = d["reaper_track"] - 1
        ours = read_project(copy).tracks[i]
        volpan = next(c for c in tracks[i] if isinstance(c, list) and c[0] == "VOLPAN")
        assert float(volpan[1]) == pytest.approx(ours.volume) and float(volpan[2]) == pytest.approx(ours.pan)
        chain = tracks[i].find("FXCHAIN")
        js = [c for c in chain if not isinstance(c, list) and c.tag == "JS"]
        keys = ("utility", "peq", "comp") * 2 + (("peq",) if decisions.get("bus_eq_db") else ())
        assert [j.attrib[0] for j in js[-len(keys):]] == [JSFX[k][0] for k in keys]
        for j, (_key, sliders) in zip(js[-len(keys):], _fxmix_sliders(ours.fx)):
            values = [float(v) for v in j.children[0] if v != "-"]
            assert len(j.children[0]) == 64 and values == pytest.approx(sliders, rel=1e-9)
        fx_lines = [ln for ln in listing.splitlines() if ln.strip().startswith("fx ")]
        assert any(JSFX["comp"][0] in ln for ln in fx_lines)
        vol_db = 20 * math.log10(ours.volume)
        assert f"#{i + 1} {d['name']!r}" in listing and f"vol {vol_db:+.1f} dB" in listing


def test_the_master_stage_goes_to_the_master_track(written, capsys):
    """The console's master stage is the copy's master FX chain (compressor > utility > limiter, the plan's
    values), before the first track as REAPER writes it; `fxmix reaper inspect` and the `rpp` package read it
    back, and the copy's notes say what differs from fxmix's master."""
    _, out, copy = written
    plan = read_decisions(out.with_suffix(".decisions.json"))["master"]
    assert plan["gain_db"] is not None
    want = master_sliders(plan)
    back = read_project(copy)
    assert [(f.kind, _JS[f.name]) for f in back.master_fx] == [("JS", "comp"), ("JS", "utility"), ("JS", "limiter")]
    for f, key in zip(back.master_fx, ("comp", "utility", "limiter")):
        assert not f.bypassed and list(f.sliders) == pytest.approx(want[key], abs=1e-9)
    assert want["comp"][1:] == pytest.approx([plan["glue_threshold_db"], 2.0, 25.0, 250.0])
    assert want["utility"][2] == plan["gain_db"] and want["limiter"][0] == -1.0
    text = copy.read_text(encoding="utf-8")
    assert text.index("<MASTERFXLIST") < text.index("<TRACK")
    assert "master track FX: the master stage" in text and "decides once" in text
    tree = rpp.loads(text)
    js = [c for c in tree.find("MASTERFXLIST") if not isinstance(c, list) and c.tag == "JS"]
    assert [j.attrib[0] for j in js] == [JSFX[k][0] for k in ("comp", "utility", "limiter")]
    for j, key in zip(js, ("comp", "utility", "limiter")):
        assert len(j.children[0]) == 64
        assert [float(v) for v in j.children[0] if v != "-"] == pytest.approx(want[key], abs=1e-9)
    capsys.readouterr()
    assert reaper_main(["inspect", str(copy)]) == 0
    listing = capsys.readouterr().out
    assert f"fx 3: JS {JSFX['limiter'][0]} [-1 5]" in listing and "master vol +0.0 dB" in listing


def test_master_fx_append_to_an_existing_chain_and_turn_it_on(session, tmp_path):
    """A project with master FX of its own (and the master chain bypassed, MASTER_FX 0): ours go after them and
    the chain is switched on; the project's master volume is read."""
    own = ("  MASTER_VOLUME 0.5 0 -1 -1 1\n  MASTER_FX 0\n  <MASTERFXLIST\n    SHOW 0\n    BYPASS 0 0 0\n"
           '    <JS "utility/volume" ""\n      -3 - - -\n    >\n    FXID {00000000-0000-0000-0000-000000000003}\n'
           "  >\n")
    text = session.read_text().replace("  SAMPLERATE 44100 0 0\n", "  SAMPLERATE 44100 0 0\n" + own)
    project_path = tmp_path / "own.RPP"
    project_path.write_text(text)
    project = read_project(project_path)
    assert [f.name for f in project.master_fx] == ["utility/volume"] and project.master_volume == 0.5
    fx = ("BYPASS 0 0 0", f'<JS "{JSFX["limiter"][0]}" ""', "-1 5" + " -" * 62, ">", "FLOATPOS 0 0 0 0",
          "FXID {00000000-0000-0000-0000-000000000004}", "WAK 0 0")
    copy = write_project_copy(project, tmp_path / "c.RPP", tmp_path / "mix.wav", position_s=0.0, length_s=2.0,
                              master_fx_lines=fx)
    back = read_project(copy)
    assert [f.name for f in back.master_fx] == ["utility/volume", JSFX["limiter"][0]]
    assert back.master_fx[1].sliders == (-1.0, 5.0)
    assert "  MASTER_FX 1\n" in copy.read_text() and copy.read_text().count("<MASTERFXLIST") == 1
    assert len(rpp.loads(copy.read_text()).find("MASTERFXLIST").findall("JS")) == 2


def test_bus_networks_write_their_per_band_contribution(session, tmp_path):
    out, copy = tmp_path / "mix.wav", tmp_path / "copy.RPP"
    assert reaper_main(["render", str(session), "-o", str(out), "--model", "none", "--write-rpp", str(copy),
                        "--no-solo-mix"]) == 0
    decisions = json.loads(out.with_suffix(".decisions.json").read_text())
    assert decisions["mixer"] == "none" and len(decisions["tracks"]) == 3
    back = read_project(copy)
    assert not back.tracks[-1].muted and not back.tracks[-1].solo
    kick, snare = back.tracks[1], back.tracks[2]
    # one drum bus, normalized once: both tracks carry the bus's normalization chain
    assert _fxmix_sliders(kick.fx)[1:4] == _fxmix_sliders(snare.fx)[1:4]
    assert kick.volume == pytest.approx(1.0) and kick.pan == pytest.approx(0.0)


def test_volpan_from_gains_inverts_the_balance_law():
    for left, right in [(1.0, 0.5), (0.3, 0.9), (2.0, 2.0), (0.0, 0.7)]:
        vol, pan = volpan_from_gains(left, right)
        assert vol * balance_gains(pan) == pytest.approx([left, right])
    assert volpan_from_gains(0.0, 0.0) == (0.0, 0.0)


def test_track_settings_keep_the_other_volpan_fields_and_make_a_chain(session, tmp_path):
    project = read_project(session)
    fx = ("BYPASS 0 0 0", '<JS "fxmix/fxmix_utility.jsfx" ""', "1 2 3 0 -2 100" + " -" * 58, ">",
          "FLOATPOS 0 0 0 0", "FXID {00000000-0000-0000-0000-000000000002}", "WAK 0 0")
    copy = write_project_copy(project, tmp_path / "c.RPP", tmp_path / "mix.wav", position_s=0.0, length_s=2.0,
                              track_settings={1: TrackSettings(0.25, -0.75, fx)})
    text = copy.read_text()
    assert "VOLPAN 0.25 -0.75 -1 -1 1" in text
    back = read_project(copy)
    assert back.tracks[1].fx[0].sliders == (1.0, 2.0, 3.0, 0.0, -2.0, 100.0)
    assert back.tracks[2].volume == pytest.approx(0.8) and back.tracks[2].fx == ()


def test_a_levelled_bus_eq_console_writes_its_class_bus_eq_per_track(session, tmp_path):
    """A console that renders the levelled recordings and EQs its class buses: each track's chain ends with its
    class bus's PEQ (the fit of the bus curve in decisions.json), read back by the `rpp` parser."""
    import torch
    from fxmix.model.config import MixerConfig
    from fxmix.model.mixer import ConsoleMixer
    from fxmix.model.states import save_model
    from fxmix.plugin_presets.exporters import mixer_chain, peq_sliders

    torch.manual_seed(0)
    model = tmp_path / "levelled"
    save_model(model, ConsoleMixer(MixerConfig(conv_channels=8, d_model=16, n_heads=2, n_layers=1, ff_size=16,
                                               colour=True, render_levelled=True, bus_eq=True)).eval())
    out, copy = tmp_path / "mix.wav", tmp_path / "song-fxmix.RPP"
    assert reaper_main(["render", str(session), "-o", str(out), "--model", str(model), "--write-rpp", str(copy)]) == 0
    decisions = read_decisions(out.with_suffix(".decisions.json"))
    assert decisions["stages"] == ["loudness"] and set(decisions["bus_eq_db"]) >= {"drums", "other"}
    tracks = rpp.loads(copy.read_text(encoding="utf-8")).findall("TRACK")
    for d in decisions["tracks"]:
        js = [c for c in tracks[d["reaper_track"] - 1].find("FXCHAIN") if not isinstance(c, list) and c.tag == "JS"]
        assert js[-1].attrib[0] == JSFX["peq"][0]
        values = [float(v) for v in js[-1].children[0] if v != "-"]
        want = peq_sliders(mixer_chain(decisions, d).bus_eq)
        assert values == pytest.approx(want, rel=1e-6, abs=1e-6)
