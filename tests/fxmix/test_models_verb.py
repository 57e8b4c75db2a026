"""`fxmix models`: every packaged model listed from its sidecar and card, within the shipped-weights budget."""

import json

from fxmix.model import default_model_path

from fxmix.verbs.models import PACKAGED, main

#: the brief's budget for every shipped weight file together
MAX_SHIPPED_MB = 20.0


def test_models_lists_every_packaged_model_as_text_and_json(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    shipped = [n for n in PACKAGED if default_model_path(n) is not None]
    assert shipped, "no packaged model found"
    for name in shipped:
        assert f"{name}: " in text
    assert "none: no network" in text
    assert main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    assert [r["name"] for r in rows] == shipped
    for r in rows:
        assert r["n_parameters"] > 0 and r["arch"] and r["profile"], r["name"]
    assert sum(r["size_mb"] for r in rows) <= MAX_SHIPPED_MB
