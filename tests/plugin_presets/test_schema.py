"""Preset schema: factory presets, round trip, and named-key errors for bad presets."""

from __future__ import annotations

import copy
import json

import pytest
from fxmix.dsp.errors import ConfigError
from fxmix.plugin_presets.schema import factory_presets, load_preset, preset_from_dict, save_preset

from fxmix.verbs.preset import main as preset_main


def test_factory_presets_load_with_their_profiles():
    names = factory_presets()
    assert {"musdb18-reference", "synthetic-v1"} <= set(names)
    for n in names:
        p = load_preset(n)
        assert p.enabled_stages() == ("eq", "compression", "panning", "loudness")
        assert p.load_profile().name == p.profile


def test_save_and_load_round_trip(tmp_path):
    p = load_preset("synthetic-v1")
    path = save_preset(p, tmp_path / "mine.json")
    assert load_preset(path) == p
    assert load_preset(str(path)).to_dict() == p.to_dict()


def _base() -> dict:
    return copy.deepcopy(load_preset("musdb18-reference").to_dict())


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(version=2), "'version'"),
        (lambda d: d.pop("profile"), "'profile'"),
        (lambda d: d.pop("stages"), "'stages'"),
        (lambda d: d["stages"]["eq"].update(amount=1.5), "stages.eq.amount"),
        (lambda d: d["stages"]["eq"].pop("enabled"), "stages.eq.enabled"),
        (lambda d: d["stages"].update(chorus={"enabled": True}), "stages.chorus"),
        (lambda d: d.update(format="other"), "'format'"),
        (lambda d: d.update(profile="no-such-profile"), "no-such-profile"),
        (
            lambda d: d.update(
                decisions={
                    "vox": {
                        "class": "vocals",
                        "params": {
                            "compression": {
                                "threshold_db": 5.0,
                                "ratio": 4.0,
                                "attack_ms": 5.0,
                                "release_ms": 50.0,
                            }
                        },
                    }
                }
            ),
            "threshold_db",
        ),
    ],
)
def test_bad_presets_name_the_key(tmp_path, mutate, key):
    d = _base()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError) as err:
        load_preset(path).load_profile()
    assert key in str(err.value), str(err.value)


def test_unknown_factory_name_lists_the_factory_presets():
    with pytest.raises(ConfigError, match="synthetic-v1"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="missing key 'name'"):
        preset_from_dict({k: v for k, v in _base().items() if k != "name"})


def test_cli_list_and_show(capsys):
    assert preset_main(["list"]) == 0
    assert "synthetic-v1" in capsys.readouterr().out
    assert preset_main(["show", "musdb18-reference"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "fxmix-preset"


_EQ = {"freqs_hz": [100.0, 1000.0], "gain_db": [1.0, 2.0]}


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(profile={"format": "fxmix-profile", "version": 1, "name": 3}), "'profile'"),
        (lambda d: d.update(decisions={"vox": {"params": {"eq": dict(_EQ, gain_db=[1.0, [2.0]])}}}), "vox.params.eq"),
        (lambda d: d.update(decisions={"vox": {"params": {"eq": dict(_EQ, freqs_hz={"a": 1})}}}), "vox.params.eq"),
        (lambda d: d.update(decisions={"vox": {"params": {"eq": dict(_EQ, gain_db="loud")}}}), "vox.params.eq"),
        (lambda d: d["stages"].update(eq={"enabled": True, "amount": [1]}), "stages.eq.amount"),
    ],
)
def test_wrong_types_inside_a_preset_name_the_file_and_key(tmp_path, mutate, key):
    d = _base()
    mutate(d)
    path = tmp_path / "typed.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError) as err:
        load_preset(path)
    assert key in str(err.value) and "typed.json" in str(err.value), str(err.value)


def test_deeply_nested_presets_are_refused(tmp_path):
    d = _base()
    node = d["decisions"] = {"vox": {"params": {}}}
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"deep.json: nested deeper than \d+ levels at decisions\.n\.n"):
        load_preset(path)
    path.write_text('{"decisions": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError, match="deep.json: nested deeper"):
        load_preset(path)
