"""Profile files: wrong types, deep nesting and bad encodings are ConfigErrors naming the file and the key."""

from __future__ import annotations

import copy
import json

import pytest
from fxmix.dsp.errors import ConfigError
from fxmix.dsp.profile import MAX_JSON_DEPTH, load_profile


def _reference() -> dict:
    return copy.deepcopy(load_profile("musdb18-reference").to_dict())


def _write(tmp_path, data) -> str:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(bands_hz=["a"] * len(d["bands_hz"])), "bands_hz"),
        (lambda d: d.update(bands_hz={"a": 1}), "bands_hz"),
        (lambda d: d.update(classes=5), "classes"),
        (lambda d: d.update(classes=[["vocals"]]), "classes"),
        (lambda d: d.update(targets=["vocals"]), "targets"),
        (lambda d: d.update(provenance=[1, 2]), "provenance"),
        (lambda d: d.update(name=None), "name"),
        (lambda d: d.update(stages_fitted="eq"), "stages_fitted"),
        (lambda d: d["targets"]["vocals"].update(phi=[[0.5]] * 3), "targets.vocals.phi"),
        (lambda d: d["targets"]["vocals"].update(spectrum_db=["x"] * 3), "targets.vocals.spectrum_db"),
        (lambda d: d["targets"]["vocals"].update(spectrum_db=3.0), "targets.vocals.spectrum_db"),
        (lambda d: d["targets"]["bass"].update(loudness_lufs="-20"), "targets.bass.loudness_lufs"),
        (lambda d: d["targets"].update(drums=None), "targets.drums"),
    ],
)
def test_wrong_types_name_the_file_and_key(tmp_path, mutate, key):
    data = _reference()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=key) as err:
        load_profile(path)
    assert path in str(err.value)


def test_deep_nesting_is_refused_with_the_key_path(tmp_path):
    data = _reference()
    node = data["provenance"]
    for _ in range(MAX_JSON_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"nested deeper than .* at provenance\.x\.x"):
        load_profile(path)


def test_nesting_past_the_parser_limit_is_a_config_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    with pytest.raises(ConfigError, match="deep.json: nested deeper"):
        load_profile(str(path))


def test_non_utf8_and_non_regular_files(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"name": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.json: not a UTF-8 profile"):
        load_profile(str(path))
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ConfigError, match="folder.json: profile file not found"):
        load_profile(str(tmp_path / "folder.json"))


def test_a_valid_profile_still_round_trips(tmp_path):
    ref = load_profile("musdb18-reference")
    again = load_profile(_write(tmp_path, ref.to_dict()))
    assert again.classes == ref.classes and again.to_dict() == ref.to_dict()
