"""Reading and writing audio block by block in the (channels, n) layout: the samples survive exactly."""

import numpy as np
import soundfile as sf
from fxmix.dsp.audio import IO_BLOCK_FRAMES, read_audio, write_audio

SR = 44100


def test_float_wav_round_trip_is_exact_across_blocks(tmp_path):
    n = 2 * IO_BLOCK_FRAMES + 123  # several blocks and a partial one
    x = (np.random.default_rng(0).standard_normal((2, n)) * 0.3).astype(np.float32)
    x[1, -1] = 1.7  # above full scale: kept in float
    path = write_audio(tmp_path / "a.wav", x, SR)
    y = read_audio(path).audio
    assert y.shape == (2, n) and y.dtype == np.float32 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)
    raw, _ = sf.read(str(path), dtype="float32", always_2d=True)  # the file itself is interleaved (n, 2)
    np.testing.assert_array_equal(raw.T, x)


def test_integer_formats_clip_and_mono_is_duplicated(tmp_path):
    n = IO_BLOCK_FRAMES + 7
    x = np.linspace(-1.5, 1.5, n, dtype=np.float32)[None]
    path = write_audio(tmp_path / "m.flac", x, SR)  # FLAC: 24-bit integers
    y = read_audio(path).audio
    assert y.shape == (2, n)
    np.testing.assert_array_equal(y[0], y[1])
    assert np.abs(y).max() <= 1.0
    inside = np.abs(x[0]) < 0.99
    np.testing.assert_allclose(y[0, inside], x[0, inside], atol=2.0**-22)
