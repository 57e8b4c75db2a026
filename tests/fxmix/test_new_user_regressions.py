"""Default profiles of the verbs `test_new_user.py` does not run: `reaper render` and `serve` normalize with
the chosen model's training profile, like `mix` and `demo` (they once took the reference profile whatever the
model, and the written project recorded that mismatch)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from fxmix.dsp.constants import REFERENCE_PROFILE
from fxmix.model.names import training_profile

from fxmix.cli import main

SR = 44100


def _project(folder, seconds: float = 2.0):
    """A Reaper project of three tracks with everyday names, each playing one noisy tone."""
    media = folder / "Audio"
    media.mkdir(parents=True)
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    tracks = ""
    for file, freq, name in [("kick", 60.0, "Kick"), ("bass", 82.0, "Bass DI"), ("vox", 440.0, "Lead Vox")]:
        x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(media / f"{file}.wav", np.stack([x, 0.9 * x], 1).astype(np.float32), SR, subtype="PCM_24")
        tracks += (
            f'  <TRACK\n    NAME "{name}"\n    <ITEM\n      POSITION 0\n      LENGTH {seconds}\n'
            f'      <SOURCE WAVE\n        FILE "Audio/{file}.wav"\n      >\n    >\n  >\n'
        )
    rpp = folder / "band.RPP"
    rpp.write_text(
        '<REAPER_PROJECT 0.1 "7.0/linux-x86_64" 1700000000\n  SAMPLERATE 44100 0 0\n' + tracks + ">\n"
    )
    return rpp


def test_reaper_render_defaults_to_the_models_training_profile(tmp_path):
    trained = training_profile("default")
    assert trained != REFERENCE_PROFILE  # else this test could not tell the two defaults apart
    rpp = _project(tmp_path / "band")
    out, rpp_out = tmp_path / "mix.wav", tmp_path / "band-fxmix.RPP"
    assert main(["reaper", "render", str(rpp), "-o", str(out), "--write-rpp", str(rpp_out)]) == 0
    assert json.loads(out.with_suffix(".params.json").read_text())["profile"] == trained
    assert re.findall(r"model=default, profile=([^,]+),", rpp_out.read_text()) == [trained]


@pytest.mark.slow  # the server loads the causal network and builds its block steps before it serves
def test_serve_defaults_to_the_models_training_profile():
    trained = training_profile("default", streaming=True)
    assert trained != REFERENCE_PROFILE
    proc = subprocess.Popen(
        [sys.executable, "-m", "fxmix.cli", "serve", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen, deadline = [], time.monotonic() + 120.0
    try:
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line.strip())
            if "serving OSC" in line:
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stderr.close()
    serving = [s for s in seen if "serving OSC" in s]
    assert serving, "fxmix serve did not start:\n" + "\n".join(seen[-20:])
    assert f"(model default, profile {trained})" in serving[0]
