"""What a new user meets on the ordinary path: files with everyday names, defaults that agree across verbs, the
printed file -> class table, progress output, readable file modes, plots that show what they say."""

import json
import os
import stat

import numpy as np
import soundfile as sf
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.profile import load_profile
from fxmix.model.names import training_profile
from support import signals

from fxmix.cli import main

SR = signals.SR


def _write(folder, names_to_class, seconds=3.0):
    folder.mkdir(parents=True, exist_ok=True)
    song = signals.song(seconds)
    for name, cls in names_to_class.items():
        sf.write(folder / name, song[cls].T, SR, subtype="PCM_24")
    return folder


def _params(path):
    return json.loads(path.read_text())


def test_everyday_track_names_get_their_class_and_nothing_is_dropped(tmp_path, capsys):
    d = _write(tmp_path / "song", {"Lead Vox.flac": "vocals", "bass_di.flac": "bass"})
    out = tmp_path / "mix.wav"
    assert main(["mix", str(d), "-o", str(out), "--model", "none"]) == 0
    printed = capsys.readouterr()
    assert "Lead Vox.flac" in printed.out and "-> vocals" in printed.out  # the table, before work
    doc = _params(out.with_suffix(".params.json"))
    assert {t["file"].rsplit("/", 1)[-1]: t["class"] for t in doc["tracks"]} == {
        "Lead Vox.flac": "vocals",
        "bass_di.flac": "bass",
    }
    # the vocal is in the mix: its normalized stem is not silent and the warnings name only the missing classes
    assert np.isfinite(integrated_loudness(np.asarray(sf.read(out, always_2d=True)[0].T), SR))
    assert doc["missing_classes"] == ["drums", "other"]
    assert any("drums: no file" in w for w in doc["warnings"]) and "fxmix: drums: no file" in printed.err


def test_class_names_match_whatever_their_case(tmp_path):
    d = _write(tmp_path / "song", {"Vocals.flac": "vocals", "DRUMS.flac": "drums"})
    out = tmp_path / "n"
    assert main(["normalize", str(d), "-o", str(out)]) == 0
    doc = _params(out / "params.json")
    assert sorted(t["class"] for t in doc["tracks"]) == ["drums", "vocals"]
    assert all(t["why"] == "name" for t in doc["tracks"])


def test_a_file_no_rule_matches_is_mixed_as_other_with_a_warning(tmp_path, capsys):
    d = _write(tmp_path / "song", {"vocals.wav": "vocals", "take 7 final.wav": "other"})
    out = tmp_path / "mix.wav"
    assert main(["mix", str(d), "-o", str(out), "--model", "none"]) == 0
    doc = _params(out.with_suffix(".params.json"))
    row = next(t for t in doc["tracks"] if t["file"].endswith("take 7 final.wav"))
    assert row["class"] == "other" and row["why"] == "no rule matched"
    assert any("take 7 final.wav" in w for w in doc["warnings"])
    assert "take 7 final.wav: no class rule matched" in capsys.readouterr().err


def test_map_overrides_a_file_class(tmp_path):
    d = _write(tmp_path / "song", {"Gtr.wav": "other", "vocals.wav": "vocals"})
    out = tmp_path / "mix.wav"
    assert main(["mix", str(d), "-o", str(out), "--model", "none", "--map", "gtr=bass"]) == 0
    doc = _params(out.with_suffix(".params.json"))
    assert {t["class"] for t in doc["tracks"] if t["file"].endswith("Gtr.wav")} == {"bass"}
    assert main(["mix", str(d), "-o", str(tmp_path / "x.wav"), "--map", "nope=bass"]) == 1


def test_every_verb_defaults_to_the_models_training_profile(tmp_path):
    trained = training_profile("default")
    assert trained != "musdb18-reference"  # the shipped default model was trained on another profile
    d = _write(tmp_path / "song", {"vocals.wav": "vocals", "bass.wav": "bass"})
    assert main(["normalize", str(d), "-o", str(tmp_path / "n")]) == 0
    assert _params(tmp_path / "n" / "params.json")["profile"] == trained
    assert main(["mix", str(d), "-o", str(tmp_path / "m.wav")]) == 0
    assert _params(tmp_path / "m.params.json")["profile"] == trained
    # the same stems through normalize and through mix land at the same normalized loudness
    n_vocals = sf.read(tmp_path / "n" / "vocals.wav", always_2d=True)[0].T
    target = load_profile(trained).targets["vocals"].loudness_lufs
    assert abs(integrated_loudness(n_vocals, SR) - target) < 0.6
    assert main(["preset", "export", str(d), "-o", str(tmp_path / "p"), "--format", "json"]) == 0
    preset = _params(next((tmp_path / "p").glob("*.preset.json")))
    assert preset["profile"] == trained
    assert training_profile("default", streaming=True) == _params_of_causal()


def _params_of_causal():
    from fxmix.model import default_model_path
    from fxmix.model.states import read_sidecar

    return read_sidecar(default_model_path("causal"))["training"]["profile"]


def test_mix_accepts_every_shipped_model_name(tmp_path):
    d = _write(tmp_path / "song", {"vocals.wav": "vocals", "drums.wav": "drums"}, seconds=2.0)
    for name in ("default", "offline", "causal", "none"):
        out = tmp_path / f"{name}.wav"
        assert main(["mix", str(d), "-o", str(out), "--model", name]) == 0, name
        assert out.is_file()


def test_mix_plot_shows_the_mix_not_the_stems(tmp_path):
    d = _write(tmp_path / "song", {"vocals.wav": "vocals", "bass.wav": "bass"}, seconds=2.0)
    out = tmp_path / "out"
    assert main(["mix", str(d), "-o", str(out), "--model", "none", "--plot"]) == 0
    mix_png, stems_png = out / "song" / "mix.spectra.png", out / "song" / "spectra.png"
    assert mix_png.is_file() and stems_png.is_file()
    assert mix_png.read_bytes() != stems_png.read_bytes()


def test_walk_through_batch_formats_modes_and_progress(tmp_path, capsys):
    """The README's way: several song folders with arbitrary mixed-case names -> OUT/<song>/mix.wav."""
    a = _write(tmp_path / "in" / "Song A", {"LEAD vocal.wav": "vocals", "Kick In.wav": "drums", "Bass DI.wav": "bass"})
    b = _write(tmp_path / "in" / "song_b", {"Piano.wav": "other", "vox.wav": "vocals"})
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert main(["mix", str(a), str(b), "-o", str(out), "--model", "none", "--int24"]) == 0
    finally:
        os.umask(old)
    printed = capsys.readouterr()
    assert "Kick In.wav" in printed.out and "-> drums" in printed.out and "Piano.wav" in printed.out
    assert "step" in printed.err  # the progress bar
    for song in ("Song A", "song_b"):
        mix = out / song / "mix.wav"
        assert sf.info(str(mix)).subtype == "PCM_24"
        assert stat.S_IMODE(mix.stat().st_mode) == 0o644
        assert stat.S_IMODE((out / song / "params.json").stat().st_mode) == 0o644
    assert [t["class"] for t in _params(out / "Song A" / "params.json")["tracks"]] == ["bass", "drums", "vocals"]
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_float_samples_cannot_go_to_flac_and_the_error_comes_first(tmp_path, capsys):
    d = _write(tmp_path / "song", {"vocals.wav": "vocals"}, seconds=1.0)
    assert main(["mix", str(d), "-o", str(tmp_path / "m.flac"), "--float32", "--model", "none"]) == 1
    assert "FLAC cannot store float" in capsys.readouterr().err
    assert not (tmp_path / "m.flac").exists() and not (tmp_path / "m.params.json").exists()
