"""The offline verbs on real files: normalize / mix / demo / profile, bad inputs, mixed sample rates."""

import json

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp.audio import read_audio, write_audio
from fxmix.dsp.errors import AudioInputError
from fxmix.dsp.features import integrated_loudness
from fxmix.dsp.profile import load_profile
from support import signals

from fxmix.cli import main

SR = signals.SR


@pytest.fixture
def stems_dir(tmp_path):
    d = tmp_path / "stems"
    song = signals.song(4.0)
    # a 44.1/48/96 kHz mix of inputs, 16-bit / 24-bit / float, one mono file
    sf.write(d.mkdir() or d / "vocals.wav", song["vocals"][0], SR, subtype="PCM_16")  # mono
    from fxmix.dsp.audio import resample

    sf.write(d / "drums.wav", resample(song["drums"], SR, 48000).T, 48000, subtype="PCM_24")
    sf.write(d / "bass.flac", resample(song["bass"], SR, 96000).T, 96000, subtype="PCM_24")
    sf.write(d / "other.wav", song["other"].T, SR, subtype="FLOAT")
    return d


def _snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_normalize_writes_stems_and_params(stems_dir, tmp_path):
    before = _snapshot(stems_dir)
    out = tmp_path / "norm"
    assert main(["normalize", str(stems_dir), "-o", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())
    assert set(params["params"]) == {"vocals", "drums", "bass", "other"}
    assert any("mono" in n for n in params["notes"]) and any("resampled" in n for n in params["notes"])
    prof = load_profile(params["profile"])
    for c in ("vocals", "bass"):
        a = read_audio(out / f"{c}.wav")
        lufs = integrated_loudness(a.audio, SR)
        assert abs(lufs - prof.targets[c].loudness_lufs) < 0.6
    assert _snapshot(stems_dir) == before  # inputs untouched


def test_mix_none_is_the_normalized_sum(stems_dir, tmp_path):
    out = tmp_path / "mix.wav"
    assert (
        main(
            [
                "mix",
                str(stems_dir),
                "-o",
                str(out),
                "--model",
                "none",
                "--save-normalized",
                str(tmp_path / "n"),
            ]
        )
        == 0
    )
    mix = read_audio(out, None).audio
    stems = [
        read_audio(tmp_path / "n" / f"{c}.wav", None).audio for c in ("vocals", "drums", "bass", "other")
    ]
    assert np.max(np.abs(mix - np.sum(stems, axis=0))) < 1e-4
    assert sf.info(str(out)).samplerate == SR  # most common input rate (2 of 4 files)


def test_stage_switches_and_missing_class(tmp_path):
    d = tmp_path / "s"
    write_audio(d / "bass.wav", signals.bass(3.0), SR)
    out = tmp_path / "o"
    assert main(["normalize", str(d), "-o", str(out), "--no-eq", "--no-comp", "--no-pan"]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["stages"] == ["loudness"]
    assert list(params["params"]["bass"]) == ["loudness"]
    assert not np.any(read_audio(out / "vocals.wav").audio)  # a missing class is silence


def test_bad_inputs_give_clear_errors_and_write_nothing(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "vocals.wav").write_bytes(b"RIFF not really a wav")
    out = tmp_path / "o"
    assert main(["normalize", str(d), "-o", str(out)]) == 1
    assert "vocals.wav" in capsys.readouterr().err
    assert not out.exists()
    d2 = tmp_path / "nan"
    x = signals.bass(1.0)
    x[0, 10] = np.nan
    sf.write(d2.mkdir() or d2 / "bass.wav", x.T, SR, subtype="FLOAT")
    assert main(["mix", str(d2), "-o", str(tmp_path / "m.wav"), "--model", "none"]) == 1
    assert "NaN" in capsys.readouterr().err and not (tmp_path / "m.wav").exists()
    d3 = tmp_path / "multi"
    sf.write(d3.mkdir() or d3 / "other.wav", np.zeros((100, 4)), SR)
    assert main(["normalize", str(d3), "-o", str(out)]) == 1
    assert "4 channels" in capsys.readouterr().err


def test_one_sample_file_and_silence(tmp_path):
    d = tmp_path / "tiny"
    sf.write(d.mkdir() or d / "vocals.wav", np.array([[0.5, 0.5]]), 48000, subtype="PCM_16")
    sf.write(d / "drums.wav", np.zeros((48000, 2)), 48000, subtype="PCM_16")
    out = tmp_path / "mix.wav"
    assert main(["mix", str(d), "-o", str(out), "--model", "none"]) == 0
    params = json.loads(out.with_suffix(".params.json").read_text())
    assert any("silent" in n for n in params["notes"])
    assert np.all(np.isfinite(read_audio(out, None).audio))


def test_output_never_overwrites_an_input(stems_dir):
    with pytest.raises(AudioInputError, match="overwrite"):
        write_audio(stems_dir / "other.wav", np.zeros((2, 10)), SR, protect=[stems_dir / "other.wav"])


def test_demo_runs(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    assert (out / "mix.wav").exists() and (out / "report.md").exists()
    assert len(list((out / "normalized").glob("*.wav"))) == 4


def test_profile_shards_merge_exactly(tmp_path):
    root = tmp_path / "ds" / "train"
    for i in range(3):
        song = signals.song(3.0, seed=10 * i)
        for c, x in song.items():
            write_audio(root / f"song{i}" / f"{c}.wav", x, SR)
    full = tmp_path / "full.json"
    assert (
        main(
            [
                "profile",
                str(tmp_path / "ds"),
                "--split",
                "train",
                "-o",
                str(full),
                "--jobs",
                "1",
                "--name",
                "t",
            ]
        )
        == 0
    )
    base = None
    for stage in ("eq", "compression", "panning", "loudness"):
        parts = []
        for k in (1, 2):
            part = tmp_path / f"{stage}{k}.json"
            args = [
                "profile",
                str(tmp_path / "ds"),
                "--split",
                "train",
                "-o",
                str(part),
                "--jobs",
                "1",
                "--name",
                "t",
                "--shard",
                f"{k}/2",
            ]
            assert main(args + (["--base", str(base)] if base else [])) == 0
            parts.append(str(part))
        base = tmp_path / f"merged-{stage}.json"
        assert main(["profile", "merge", *parts, "-o", str(base)]) == 0
    a, b = load_profile(full), load_profile(base)
    for c in a.classes:
        ta, tb = a.targets[c], b.targets[c]
        assert np.allclose(ta.spectrum_db, tb.spectrum_db, atol=1e-3)
        assert np.allclose(ta.phi, tb.phi, atol=1e-3)
        assert ta.loudness_lufs == pytest.approx(tb.loudness_lufs, abs=1e-3)
        assert ta.onset_peak_mean_db == pytest.approx(tb.onset_peak_mean_db, abs=1e-3)
