"""The EQ refinement's scratch copies: a stem given up (``in_place``) is worked in its own array while its
input waits in a temporary file, with the same result as a chain that keeps a copy in memory."""

import tempfile

import numpy as np
import pytest
from fxmix.dsp import constants as C
from fxmix.dsp.chain import normalize_stem
from fxmix.dsp.profile import load_profile
from fxmix.dsp.scratch import ScratchCopy, ScratchPool
from support import signals

SR = signals.SR


@pytest.fixture(scope="module")
def profile():
    return load_profile(C.REFERENCE_PROFILE)


def _params(res) -> dict:
    return {k: (v.to_dict() if v is not None else None) for k, v in res.params.items()}


# vocals and drums end in band after the replay; bass (below the band) and other (threshold limit) search
# the threshold again and land where the replay was, so their finished stem comes back from the scratch
@pytest.mark.parametrize("cls", ["vocals", "drums", "bass", "other"])
def test_in_place_matches_the_chain_that_keeps_its_input(profile, cls):
    x = getattr(signals, cls)(20.0)
    kept = normalize_stem(x, SR, cls, profile, in_place=False)
    given = x.copy()
    res = normalize_stem(given, SR, cls, profile, in_place=True)
    assert res.audio is given
    assert _params(res) == _params(kept)
    np.testing.assert_array_equal(res.audio, kept.audio)
    np.testing.assert_array_equal(x, getattr(signals, cls)(20.0))  # the kept input is untouched


def test_no_scratch_folder_keeps_the_copy_in_memory(profile, monkeypatch, tmp_path):
    """A temporary folder that cannot be written: the chain keeps its copies in memory, same result."""
    x = signals.other(20.0)
    ref = normalize_stem(x.copy(), SR, "other", profile, in_place=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    assert ScratchCopy.of(x) is None
    given = x.copy()
    res = normalize_stem(given, SR, "other", profile, in_place=True)
    assert res.audio is given
    np.testing.assert_array_equal(res.audio, ref.audio)


def test_scratch_copy_round_trip_and_pool_reuse():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 100_003)).astype(np.float32)
    pool = ScratchPool()
    try:
        copy = pool.copy_of(a)
        out = np.empty_like(a)
        np.testing.assert_array_equal(copy.load(out), a)
        with pytest.raises(ValueError, match="holds a"):
            copy.load(np.empty((2, 10), np.float32))
        pool.give_back(copy)
        b = rng.standard_normal((2, 50_000)).astype(np.float32)  # shorter: written over the same file
        again = pool.copy_of(b)
        assert again is copy
        np.testing.assert_array_equal(again.load(np.empty_like(b)), b)
        pool.give_back(again)
    finally:
        pool.close()
