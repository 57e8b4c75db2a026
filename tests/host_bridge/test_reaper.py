"""Reaper .RPP reader, timeline renderer and project write-back, on hand-written fixtures with generated WAVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp.errors import AudioInputError, ConfigError
from fxmix.dsp.track_classes import assign_classes
from fxmix.host_bridge.reaper import (
    FXMIX_TRACK_NAME,
    audible_tracks,
    balance_gains,
    check_media,
    parse_rpp_text,
    quote,
    read_project,
    render_buses,
    render_track,
    tokenize,
    write_project_copy,
)

SR = 44100

FIXTURE = """<REAPER_PROJECT 0.1 "7.0/linux-x86_64" 1700000000
  RIPPLE 0
  SAMPLERATE 44100 0 0
  <NOTES 0 2
  >
  <TRACK {3F1D0C4A-0000-0000-0000-000000000001}
    NAME Drums
    VOLPAN 0.5 0 -1 -1 1
    MUTESOLO 0 0 0
    IPHASE 0
    ISBUS 1 1
  >
  <TRACK
    NAME "Kick In"
    VOLPAN 1 0 -1 -1 1
    MUTESOLO 0 0 0
    ISBUS 0 0
    <ITEM
      POSITION 0.5
      SNAPOFFS 0
      LENGTH 0.5
      LOOP 0
      ALLTAKES 0
      FADEIN 1 0 0 1 0 0 0
      FADEOUT 1 0 0 1 0 0 0
      MUTE 0 0
      NAME kick
      VOLPAN 0.5 0 1 -1
      SOFFS 0.25
      PLAYRATE 1 1 0 -1 0 0.0025
      CHANMODE 0
      <SOURCE WAVE
        FILE "media/kick.wav"
      >
    >
    <ITEM
      POSITION 2
      LENGTH 1
      LOOP 0
      MUTE 0 0
      NAME "kick late"
      VOLPAN 0.5 0 1 -1
      SOFFS 1
      <SOURCE WAVE
        FILE "media/kick.wav"
      >
    >
    <ITEM
      POSITION 3.5
      LENGTH 0.5
      MUTE 1 0
      NAME "kick muted item"
      VOLPAN 1 0 1 -1
      SOFFS 0
      <SOURCE WAVE
        FILE "media/kick.wav"
      >
    >
  >
  <TRACK
    NAME "Überkopf Ä"
    VOLPAN 1 0.5 -1 -1 1
    MUTESOLO 0 0 0
    ISBUS 2 -1
    <ITEM
      POSITION 1
      LENGTH 2
      LOOP 0
      FADEIN 0 0.1 0 1 0 0 0
      FADEOUT 0 0.2 0 1 0 0 0
      MUTE 0 0
      NAME overhead
      VOLPAN 1 0 1 -1
      SOFFS 0
      <SOURCE WAVE
        FILE "{ABS}"
      >
    >
  >
  <TRACK
    NAME "Lead Vox"
    VOLPAN 1 -0.5 -1 -1 1
    MUTESOLO 0 0 0
    ISBUS 0 0
    <ITEM
      POSITION 0.25
      LENGTH 2.5
      LOOP 0
      MUTE 0 0
      NAME take1
      VOLPAN 1 0 1 -1
      SOFFS 0
      <SOURCE WAVE
        FILE "media/bass.wav"
      >
      TAKE SEL
      NAME "take 2"
      TAKEVOLPAN 0.25 0.5 -1
      SOFFS 0.5
      PLAYRATE 1 1 0 -1 0 0.0025
      CHANMODE 0
      <SOURCE WAVE
        FILE "media/stimme ü.wav"
      >
    >
  >
  <TRACK
    NAME Bass
    VOLPAN 1 0 -1 -1 1
    MUTESOLO 1 0 0
    ISBUS 0 0
    <ITEM
      POSITION 0
      LENGTH 2
      VOLPAN 1 0 1 -1
      SOFFS 0
      <SOURCE FLAC
        FILE "media/bass.wav"
      >
    >
  >
  <TRACK
    NAME Keys
    VOLPAN 1 0 -1 -1 1
    MUTESOLO 0 0 0
    ISBUS 0 0
    <ITEM
      POSITION 0
      LENGTH 4
      LOOP 1
      VOLPAN 1 0 1 -1
      SOFFS 0
      <SOURCE WAVE
        FILE media/kick.wav
      >
    >
    <ITEM
      POSITION 1
      LENGTH 2
      LOOP 1
      NAME "midi part"
      VOLPAN 1 0 1 -1
      SOFFS 0 0
      <SOURCE MIDI
        HASDATA 1 960 QN
        E 0 90 3c 60
        E 480 80 3c 00
        E 0 b0 7b 00
      >
    >
  >
>
"""


def _noise(rng: np.random.Generator, channels: int, seconds: float) -> np.ndarray:
    return (rng.standard_normal((channels, int(round(seconds * SR)))) * 0.25).astype(np.float32)


@pytest.fixture
def session(tmp_path: Path) -> dict:
    """A project folder with media (relative, absolute elsewhere, non-ASCII name) and the fixture RPP."""
    rng = np.random.default_rng(1234)
    media = tmp_path / "proj" / "media"
    media.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    files = {
        "kick": (media / "kick.wav", _noise(rng, 1, 1.5)),
        "oh": (elsewhere / "oh.wav", _noise(rng, 2, 2.0)),
        "vox": (media / "stimme ü.wav", _noise(rng, 2, 3.0)),
        "bass": (media / "bass.wav", _noise(rng, 2, 2.0)),
    }
    for path, audio in files.values():
        sf.write(str(path), audio.T, SR, subtype="FLOAT")
    text = FIXTURE.replace("{ABS}", str(files["oh"][0]))
    rpp = tmp_path / "proj" / "song.RPP"
    rpp.write_text(text, encoding="utf-8")
    return {"rpp": rpp, "text": text, "audio": {k: v[1] for k, v in files.items()}, "files": files}


def _stereo(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x


# ------------------------------------------------------------------------------------------------- parser
def test_tokenize_quotes_and_quote_roundtrip():
    assert tokenize('FILE "a b.wav" 1') == ["FILE", "a b.wav", "1"]
    assert tokenize("NAME 'say \"hi\"'") == ["NAME", 'say "hi"']
    assert tokenize('NAME `it\'s "x"`') == ["NAME", 'it\'s "x"']
    assert tokenize('NAME ""') == ["NAME", ""]
    for s in ["plain", "with space", 'dq"', "sq' dq\"", "all ` ' \"", ""]:
        back = tokenize("K " + quote(s))[1]
        assert back == s.replace("`", "'") if all(q in s for q in "\"'`") else back == s


def test_reader_tracks_items_folders(session):
    project = read_project(session["rpp"])
    names = [t.name for t in project.tracks]
    assert names == ["Drums", "Kick In", "Überkopf Ä", "Lead Vox", "Bass", "Keys"]
    drums, kick, oh, vox, bass, keys = project.tracks
    assert drums.is_folder and drums.volume == pytest.approx(0.5)
    assert kick.parent == 0 and oh.parent == 0 and vox.parent is None and kick.depth == 1
    assert oh.pan == pytest.approx(0.5)
    assert bass.muted and not kick.muted
    it = kick.items[0]
    assert (it.position_s, it.length_s, it.soffs_s, it.volume) == (0.5, 0.5, 0.25, 0.5)
    assert kick.items[2].muted and not kick.items[2].renderable
    # absolute path outside the project folder, relative path with a non-ASCII name in the active take
    assert oh.items[0].path == session["files"]["oh"][0]
    v = vox.items[0]
    assert v.take_index == 1 and v.n_takes == 2 and v.path == session["files"]["vox"][0]
    assert v.volume == pytest.approx(0.5) and v.pan == pytest.approx(0.25) and v.soffs_s == 0.5
    # MIDI is skipped with a warning, not silently
    midi = keys.items[1]
    assert midi.source_type == "MIDI" and not midi.renderable
    assert any("MIDI" in w and "midi part" in w for w in project.warnings)
    assert audible_tracks(project) == [True, True, True, True, False, True]


def test_crlf_and_bom_parse_the_same(session, tmp_path):
    crlf = session["rpp"].with_name("song_crlf.RPP")
    crlf.write_bytes(("\ufeff" + session["text"].replace("\n", "\r\n")).encode("utf-8"))
    a, b = read_project(session["rpp"]), read_project(crlf)
    assert a.tracks == b.tracks
    assert b.tracks[2].name == "Überkopf Ä"


def test_damaged_project_errors(tmp_path):
    with pytest.raises(AudioInputError, match="not a Reaper project"):
        parse_rpp_text("<TRACK\n>\n")
    with pytest.raises(AudioInputError, match="never closed"):
        parse_rpp_text("<REAPER_PROJECT 0.1\n  <TRACK\n    NAME x\n")
    bad = tmp_path / "bad.RPP"
    bad.write_text("<REAPER_PROJECT 0.1\n  <TRACK\n    VOLPAN abc 0\n  >\n>\n", encoding="utf-8")
    with pytest.raises(AudioInputError, match="VOLPAN"):
        read_project(bad)
    with pytest.raises(AudioInputError, match="not found"):
        read_project(tmp_path / "nope.RPP")


def test_missing_media_one_error_lists_all(tmp_path):
    text = (
        "<REAPER_PROJECT 0.1\n"
        "  <TRACK\n    NAME A\n    <ITEM\n      POSITION 0\n      LENGTH 1\n"
        '      <SOURCE WAVE\n        FILE "gone/first.wav"\n      >\n    >\n  >\n'
        "  <TRACK\n    NAME B\n    <ITEM\n      POSITION 1\n      LENGTH 1\n"
        f'      <SOURCE FLAC\n        FILE "{tmp_path / "abs" / "second.flac"}"\n      >\n    >\n  >\n'
        ">\n"
    )
    rpp = tmp_path / "m.RPP"
    rpp.write_text(text, encoding="utf-8")
    project = read_project(rpp)
    with pytest.raises(AudioInputError) as err:
        check_media(project)
    msg = str(err.value)
    assert "2 media file(s) not found" in msg and "first.wav" in msg and "second.flac" in msg
    with pytest.raises(AudioInputError, match="first.wav"):
        render_buses(project, ["other", "other"])


# ---------------------------------------------------------------------------------------------- rendering
def test_track_placement_is_sample_exact(session):
    project = read_project(session["rpp"])
    n = int(round(project.length_s * SR))
    assert n == 4 * SR
    kick = _stereo(session["audio"]["kick"])  # 66150 samples
    got = render_track(project, 1)
    want = np.zeros((2, n), np.float32)
    g = np.float32(0.5 * 0.5)  # item trim 0.5 x folder volume 0.5
    want[:, 22050:44100] = kick[:, 11025:33075] * g  # POSITION 0.5, LENGTH 0.5, SOFFS 0.25
    want[:, 88200:110250] = kick[:, 44100:66150] * g  # POSITION 2, SOFFS 1: source ends half-way
    np.testing.assert_array_equal(got, want)
    assert np.flatnonzero(got[0])[0] == 22050


def test_fades_pan_and_folder_gain(session):
    project = read_project(session["rpp"])
    oh = session["audio"]["oh"]
    got = render_track(project, 2)
    n_item = 2 * SR
    env = np.ones(n_item)
    j = np.arange(n_item)
    env[:4410] = j[:4410] / 4410  # linear fade-in 0.1 s
    env[-8820:] = (n_item - 1 - j[-8820:]) / 8820  # linear fade-out 0.2 s
    gains = np.array([0.5 * 0.5, 0.5 * 1.0])  # folder 0.5 x balance pan 0.5 (L 0.5, R 1)
    want = np.zeros_like(got)
    want[:, SR : SR + n_item] = oh * gains[:, None].astype(np.float32) * env.astype(np.float32)
    np.testing.assert_allclose(got, want, atol=1e-7)
    assert not np.any(got[:, :SR]) and not np.any(got[:, SR + n_item :])


def test_active_take_offset_and_pans(session):
    project = read_project(session["rpp"])
    vox = session["audio"]["vox"]
    got = render_track(project, 3)
    g = 0.5 * balance_gains(0.25) * balance_gains(-0.5)  # take vol, take pan, track pan
    assert g == pytest.approx([0.375, 0.25])
    want = np.zeros_like(got)
    start, n = int(0.25 * SR), int(2.5 * SR)
    want[:, start : start + n] = vox[:, SR // 2 : SR // 2 + n] * g[:, None].astype(np.float32)
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_loop_item_wraps_source(session):
    project = read_project(session["rpp"])
    kick = _stereo(session["audio"]["kick"])
    got = render_track(project, 5)
    want = kick[:, np.arange(4 * SR) % kick.shape[1]]
    np.testing.assert_array_equal(got, want)


def test_buses_classes_mute_and_window(session):
    project = read_project(session["rpp"])
    classes = assign_classes([t.name for t in project.tracks], [t.parent for t in project.tracks])
    assert classes == ["drums", "drums", "drums", "vocals", "bass", "other"]
    buses = render_buses(project, classes)
    assert sorted(buses) == ["drums", "other", "vocals"]  # the muted bass track makes no bus
    np.testing.assert_allclose(buses["drums"], render_track(project, 1) + render_track(project, 2), atol=1e-7)
    win = render_buses(project, classes, start_s=0.75, end_s=2.25)
    assert win["drums"].shape == (2, int(1.5 * SR))
    np.testing.assert_allclose(win["drums"], buses["drums"][:, int(0.75 * SR) : int(2.25 * SR)], atol=1e-7)
    with pytest.raises(ConfigError, match="empty"):
        render_buses(project, classes, start_s=2.0, end_s=1.0)


def test_solo_plays_only_soloed_and_children(session, tmp_path):
    text = session["text"].replace(
        "NAME Drums\n    VOLPAN 0.5 0 -1 -1 1\n    MUTESOLO 0 0 0",
        "NAME Drums\n    VOLPAN 0.5 0 -1 -1 1\n    MUTESOLO 0 1 0",
    )
    rpp = session["rpp"].with_name("solo.RPP")
    rpp.write_text(text, encoding="utf-8")
    assert audible_tracks(read_project(rpp)) == [True, True, True, False, False, False]


# ------------------------------------------------------------------------------------------------ writing
def _same_tracks(a, b):
    assert [t.name for t in a] == [t.name for t in b]
    for ta, tb in zip(a, b):
        assert (ta.volume, ta.pan, ta.muted, ta.solo, ta.parent, ta.depth) == (
            tb.volume, tb.pan, tb.muted, tb.solo, tb.parent, tb.depth)  # fmt: skip
        assert len(ta.items) == len(tb.items)
        for ia, ib in zip(ta.items, tb.items):
            assert (ia.position_s, ia.length_s, ia.soffs_s, ia.volume, ia.pan, ia.muted, ia.skip_reason) == (
                ib.position_s, ib.length_s, ib.soffs_s, ib.volume, ib.pan, ib.muted, ib.skip_reason)  # fmt: skip
            assert (ia.path.resolve() if ia.path else None) == (ib.path.resolve() if ib.path else None)


@pytest.mark.parametrize("crlf", [False, True])
def test_round_trip_write_copy(session, tmp_path, crlf):
    rpp = session["rpp"]
    if crlf:
        rpp = rpp.with_name("crlf.RPP")
        rpp.write_bytes(session["text"].replace("\n", "\r\n").encode("utf-8"))
    project = read_project(rpp)
    mix = tmp_path / "out" / "mix ü.wav"
    mix.parent.mkdir()
    sf.write(str(mix), np.zeros((4 * SR, 2), np.float32), SR)
    out = tmp_path / "out" / "copy.RPP"  # another folder: relative media must be re-pointed
    notes = ['"Kick In" [drums]: VOLPAN 0.5 0', 'class params: {"gain_db": -3.0}']
    write_project_copy(project, out, mix, position_s=0.0, length_s=4.0, notes=notes)
    raw = out.read_bytes()
    assert (b"\r\n" in raw) == crlf
    again = read_project(out)
    _same_tracks(again.tracks[:-1], project.tracks)
    fx = again.tracks[-1]
    assert fx.name == FXMIX_TRACK_NAME and fx.parent is None and fx.solo == 1
    assert len(fx.items) == 1 and fx.items[0].path.resolve() == mix.resolve() and fx.items[0].length_s == 4.0
    assert "VOLPAN 0.5 0" in raw.decode("utf-8")
    for i in (1, 2, 3, 5):  # the copy renders the original tracks identically
        np.testing.assert_array_equal(render_track(again, i), render_track(project, i))
    with pytest.raises(AudioInputError, match="overwrite the input"):
        write_project_copy(project, rpp, mix, position_s=0.0, length_s=4.0)


def test_write_copy_with_open_folder_puts_track_first(tmp_path):
    text = (
        "<REAPER_PROJECT 0.1\n  <TRACK\n    NAME Dir\n    ISBUS 1 1\n  >\n  <TRACK\n    NAME Child\n  >\n>\n"
    )
    rpp = tmp_path / "open.RPP"
    rpp.write_text(text, encoding="utf-8")
    out = tmp_path / "open-fx.RPP"
    write_project_copy(read_project(rpp), out, tmp_path / "m.wav", position_s=1.0, length_s=2.0)
    tracks = read_project(out).tracks
    assert [t.name for t in tracks] == [FXMIX_TRACK_NAME, "Dir", "Child"]
    assert tracks[0].parent is None and tracks[2].parent == 1


def test_other_rate_source_is_resampled_and_placed(tmp_path):
    x = np.zeros((48000, 1), np.float32)
    x[4800] = 1.0  # impulse at 0.1 s in a 48 kHz file
    sf.write(str(tmp_path / "click48k.wav"), x, 48000, subtype="FLOAT")
    text = (
        "<REAPER_PROJECT 0.1\n  <TRACK\n    NAME Perc\n    <ITEM\n      POSITION 0.5\n      LENGTH 1\n"
        '      <SOURCE WAVE\n        FILE "click48k.wav"\n      >\n    >\n  >\n>\n'
    )
    rpp = tmp_path / "r.RPP"
    rpp.write_text(text, encoding="utf-8")
    got = render_track(read_project(rpp), 0)
    assert got.shape == (2, int(1.5 * SR))
    assert abs(int(np.argmax(np.abs(got[0]))) - (22050 + 4410)) <= 1
    energy = float(np.sum(got[0].astype(np.float64) ** 2))
    assert 0.6 < energy < 44100 / 48000  # the impulse survives resampling (band-limited: some energy lost)


def test_nan_media_is_named(tmp_path):
    x = np.zeros((SR, 2), np.float32)
    x[100] = np.nan
    sf.write(str(tmp_path / "bad.wav"), x, SR, subtype="FLOAT")
    text = (
        "<REAPER_PROJECT 0.1\n  <TRACK\n    NAME Gtr\n    <ITEM\n      POSITION 0\n      LENGTH 1\n"
        '      <SOURCE WAVE\n        FILE "bad.wav"\n      >\n    >\n  >\n>\n'
    )
    rpp = tmp_path / "n.RPP"
    rpp.write_text(text, encoding="utf-8")
    with pytest.raises(AudioInputError, match="bad.wav"):
        render_buses(read_project(rpp), ["other"])
