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


def test_a_closed_pipe_ends_the_listing_without_a_traceback():
    """`fxmix models | head -1`: the reader goes away (here before anything is printed, so the write must
    fail); the command stops quietly (exit 141, as Unix tools do)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "fxmix.cli", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err, err
