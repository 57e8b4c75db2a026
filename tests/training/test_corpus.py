"""Session corpus: layout, reproducibility, shards, module solos, sources and licences, stems and mixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fxmix.dsp.audio import read_audio
from fxmix.dsp.constants import CLASSES, SAMPLE_RATE
from fxmix.dsp.stages.master import master
from fxmix.training.corpus.build import build_corpus, plan_corpus
from fxmix.training.corpus.human import package_root
from fxmix.training.corpus.openmpt import TrackerModule
from fxmix.training.data import MultitrackDataset

# seed 19 draws a procedural song and a freedroid-data module excerpt (needs only libopenmpt0 + freedroid-data)
SEED, SONGS, SECONDS, FAMILIES = 19, 2, 4.0, ("procedural", "human")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    build_corpus(root, SONGS, SECONDS, SEED, families=FAMILIES, progress=False)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parent.name != "shards" and p.name != "corpus.json"}


def test_plan_uses_the_freedroid_module() -> None:
    plans = plan_corpus(SONGS, SECONDS, SEED, FAMILIES)
    assert sorted(p.family for p in plans) == ["human", "procedural"]
    human = next(p for p in plans if p.family == "human")
    assert human.excerpt is not None and human.excerpt.package == "freedroid-data"


def test_layout_and_song_json(corpus: Path) -> None:
    songs = [p.parent for p in corpus.rglob("song.json")]
    assert len(songs) == SONGS
    for song in songs:
        meta = json.loads((song / "song.json").read_text())
        for name in (*CLASSES, "mixture"):
            assert (song / f"{name}.flac").is_file()
        assert 2 <= len(meta["tracks"]) <= 24
        for t in meta["tracks"]:
            assert t["class"] in CLASSES and t["instrument"]
            assert t["source"] and t["licence"], t["name"]
            assert (song / t["dry"]).is_file() and (song / t["wet"]).is_file()
            assert isinstance(t["decisions"], dict) and t["decisions"]
        if meta["family"] == "human":
            assert all(t["composer_level_db"] is not None and -1 <= t["composer_pan"] <= 1 for t in meta["tracks"])
    ds = MultitrackDataset(corpus, meta["split"])
    assert len(ds) >= 1 and ds[0].mixture.shape == (2, int(SECONDS * SAMPLE_RATE))


def test_stems_are_wet_track_sums_and_mixture_is_their_master(corpus: Path) -> None:
    for song in (p.parent for p in corpus.rglob("song.json")):
        meta = json.loads((song / "song.json").read_text())
        stems = {c: read_audio(song / f"{c}.flac").audio for c in CLASSES}
        for c in CLASSES:
            wet = [read_audio(song / t["wet"]).audio for t in meta["tracks"] if t["class"] == c]
            want = np.sum(wet, axis=0) if wet else np.zeros_like(stems[c])
            # PCM_24 storage: each file is within 2**-24 of its float value
            assert np.max(np.abs(stems[c] - want)) < 1e-6 * (len(wet) + 1), (song.name, c)
        replay = master(np.sum(list(stems.values()), axis=0), meta["master"], SAMPLE_RATE)
        mixture = read_audio(song / "mixture.flac").audio
        err = np.linalg.norm(replay - mixture) / np.linalg.norm(mixture)
        # stored stems are trimmed under full scale (24-bit PCM clips there), so the replay is exact but for
        # the 24-bit rounding of stems and mixture
        assert err < 1e-3, (song.name, err)


def test_shards_rebuild_the_same_bytes(corpus: Path, tmp_path: Path) -> None:
    for k in (1, 2):
        build_corpus(tmp_path, SONGS, SECONDS, SEED, families=FAMILIES, shard=f"{k}/2", progress=False)
    assert sorted((tmp_path / "shards").iterdir()) == [tmp_path / "shards" / "1-of-2.json",
                                                       tmp_path / "shards" / "2-of-2.json"]
    whole, union = _files(corpus), _files(tmp_path)
    assert whole.keys() == union.keys()
    assert all(whole[k] == union[k] for k in whole), [k for k in whole if whole[k] != union[k]]


def test_module_solos_sum_to_the_full_render() -> None:
    mod = TrackerModule(package_root("freedroid-data") / "The_Last_V8.mod")
    full = mod.render(20.0, 3.0)
    solos = sum(mod.render(20.0, 3.0, solo=u) for u in range(len(mod.unit_names)))
    assert np.max(np.abs(full)) > 0.01
    assert np.linalg.norm(solos - full) / np.linalg.norm(full) < 1e-3


def test_a_seek_keeps_the_notes_that_are_still_sounding() -> None:
    """freedroid's AnarchyMenu1.mod holds a note of unit 1 across 10 s (silent over the first 0.1 s of an
    excerpt starting there when a seek drops sounding notes): the excerpt hears it at once."""
    mod = TrackerModule(package_root("freedroid-data") / "AnarchyMenu1.mod")
    held = mod.render(10.0, 0.1, solo=1)
    assert np.max(np.abs(held)) > 0.1


def test_midi_entries_take_the_song_length_and_tempo_the_right_way_round(tmp_path: Path, monkeypatch) -> None:
    """A 100-BPM file of 40 beats lasts 24 s: its table entry's tempo, duration and activity say so."""
    import mido
    from fxmix.training.corpus import human

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100)),
                            mido.Message("program_change", program=0, channel=0)])
    for _ in range(40):
        track += [mido.Message("note_on", note=60, velocity=90, time=0),
                  mido.Message("note_off", note=60, velocity=0, time=480)]
    mid.tracks.append(track)
    mid.save(str(tmp_path / "song.mid"))
    monkeypatch.setattr(human, "package_root", lambda package: tmp_path)  # the file stands in for a package's
    entry = human.draft_midi("openttd-openmsx", tmp_path / "song.mid")
    assert abs(entry["tempo_bpm"] - 100.0) < 1e-3 and abs(entry["duration_s"] - 24.0) < 0.1
    assert len(entry["active_per_s"]) == 24


def test_a_failing_song_stops_the_build_and_resume_renders_only_the_rest(tmp_path) -> None:
    plans = plan_corpus(3, 2.0, 7, ("procedural",))
    last = plans[-1]
    blocker = tmp_path / last.split / last.name  # a file where the song's folder must go: a real write error
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    with pytest.raises(Exception, match=f"song {last.name} .*--resume"):
        build_corpus(tmp_path, 3, 2.0, 7, families=("procedural",), progress=False)
    assert not (tmp_path / "corpus.json").exists()
    first = tmp_path / plans[0].split / plans[0].name / "song.json"
    stamp = first.stat().st_mtime_ns
    blocker.unlink()
    m = build_corpus(tmp_path, 3, 2.0, 7, families=("procedural",), progress=False, resume=True)
    assert m["kept"] == 2 and len(m["songs"]) == 3
    assert first.stat().st_mtime_ns == stamp  # kept, not rendered again
    assert (tmp_path / last.split / last.name / "song.json").is_file()
