"""The streamed mix path (buses normalized one at a time on disk, network chunk by chunk into the mix file)
gives the mix of the whole-array path, and its file writer resamples and measures like the whole-file one."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from fxmix.dsp import constants as C
from fxmix.dsp.audio import resample, write_audio
from fxmix.dsp.audio_stream import AudioStreamWriter
from fxmix.dsp.errors import AudioInputError
from fxmix.dsp.profile import load_profile
from fxmix.dsp.stems import load_buses
from fxmix.model.apply import chunk_weights, cut_samples, plan_chunks
from fxmix.model.automix import automix
from fxmix.model.names import model_profile
from fxmix.model.runtime import resolve_model
from fxmix.model.streamed import EXCERPT_S, N_EXCERPTS, excerpt_ranges, mix_song, normalize_song

from tests.support import signals

SR = C.SAMPLE_RATE


@pytest.fixture(scope="module")
def song_files(tmp_path_factory):
    """A 30-s four-stem song on disk (vocals shorter, so the buses are zero-padded to one length)."""
    folder = tmp_path_factory.mktemp("song")
    stems = signals.song(30.0, seed=5)
    files = {}
    for c, x in stems.items():
        x = x[:, : 25 * SR] if c == "vocals" else x
        files[c] = [write_audio(folder / f"{c}.wav", x, SR)]
    return files


@pytest.fixture(scope="module")
def both_paths(song_files, tmp_path_factory):
    """The song normalized by the whole-array path (:func:`automix`, its normalized sum) and by the streamed
    one (on disk), with the profile of the default model."""
    runtime = resolve_model("default")
    profile = load_profile(model_profile(runtime))
    whole = automix(load_buses(song_files, profile.classes).buses, model=None, profile=profile)
    norm = normalize_song(song_files, profile, tmp_path_factory.mktemp("work"))
    return runtime, whole, norm


def test_streamed_normalization_is_the_whole_array_one(both_paths):
    _, whole, norm = both_paths
    blocks = []
    res = mix_song(norm, None, blocks.append)
    assert res.params == whole.params and res.notes == whole.notes
    for c in norm.stems.names:  # sample for sample, zero-padded to the longest bus
        np.testing.assert_array_equal(norm.stems.load(c), whole.normalized[c])
    mix = np.concatenate(blocks, axis=-1)
    assert mix.shape == whole.mix.shape == (2, 30 * SR)
    assert float(np.max(np.abs(mix - whole.mix))) <= 1e-4
    # a song under EXCERPT_S is kept whole for the estimates that need audio
    np.testing.assert_array_equal(res.mix, mix)
    np.testing.assert_array_equal(res.normalized["bass"], whole.normalized["bass"])


def test_long_songs_keep_evenly_spaced_excerpts():
    n = 20 * 60 * SR
    ranges = excerpt_ranges(n)
    assert len(ranges) == N_EXCERPTS and ranges[0][0] == 0 and ranges[-1][1] == n
    assert sum(b - a for a, b in ranges) == pytest.approx(EXCERPT_S * SR, abs=N_EXCERPTS)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(ranges, ranges[1:]))


def test_streamed_network_mix_matches_whole_array_path(both_paths):
    runtime, whole, norm = both_paths
    x = torch.from_numpy(np.stack([whole.normalized[c] for c in C.CLASSES]))[None]  # what automix gives it
    # the reference: the whole song's output array, every chunk's core overlap-added into it
    plan = plan_chunks(runtime, x.shape[-1])
    ref = np.zeros((2, x.shape[-1]), np.float32)
    for k, s in enumerate(plan.starts):
        y = runtime.mix_window(cut_samples(x, s - plan.guard, plan.chunk), plan.guard, plan.core)[0]
        ref[:, s : s + plan.core] += (y * chunk_weights(plan, k)).numpy()
    blocks = []
    mix_song(norm, runtime, blocks.append)
    assert len(blocks) > 1  # 30 s is several chunks: streamed, not one pass
    mix = np.concatenate(blocks, axis=-1)
    assert mix.shape == ref.shape and float(np.max(np.abs(ref))) > 0.01
    assert float(np.max(np.abs(mix - ref))) <= 1e-4


def test_stream_writer_resamples_and_counts_like_whole_file(tmp_path):
    x = signals.noise(3.0, seed=2) * np.float32(1.5)  # above full scale in places
    out = tmp_path / "mix.wav"
    with AudioStreamWriter(out, SR, 48000, subtype="PCM_24") as w:
        for a in range(0, x.shape[-1], 10_000):  # odd block sizes on purpose
            w.write(x[:, a : a + 10_000])
    y, rate = sf.read(out, dtype="float32", always_2d=True)
    ref = resample(x, SR, 48000)
    assert rate == 48000 and y.shape[0] == ref.shape[-1]
    assert float(np.max(np.abs(y.T - np.clip(ref, -1, 1)))) <= 1e-4
    assert w.n_over == int(np.count_nonzero(np.abs(ref) > 1.0))
    assert abs(w.peak - float(np.max(np.abs(ref)))) <= 1e-4


def test_stream_writer_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "mix.wav"
    bad = np.zeros((2, 100), np.float32)
    bad[0, 5] = np.nan
    with pytest.raises(AudioInputError, match="NaN"):
        with AudioStreamWriter(out, SR, SR) as w:
            w.write(np.zeros((2, 100), np.float32))
            w.write(bad)
    assert list(tmp_path.iterdir()) == []
