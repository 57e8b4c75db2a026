"""kill -9 during `fxmix reaper render --write-rpp`: every output is the previous complete one or the new complete
one, and the next run succeeds and leaves no temporary files."""

import json
import signal
import subprocess
import sys
import time

import soundfile as sf
from fxmix.host_bridge.reaper import read_project
from support import signals

SR = signals.SR

RPP = """<REAPER_PROJECT 0.1 "7.0" 1700000000
  <TRACK
    NAME "Lead Vox"
    VOLPAN 0.7 0.1 -1 -1 1
    <ITEM
      POSITION 0
      LENGTH 6
      <SOURCE WAVE
        FILE "vox.wav"
      >
    >
  >
>
"""


def _check_outputs(folder, expected):
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == expected
    assert sf.info(str(folder / "mix.wav")).frames == 6 * SR
    for name in ("mix.params.json", "mix.decisions.json"):
        json.loads((folder / name).read_text())
    copy = read_project(folder / "copy.RPP")
    assert copy.tracks[0].fx and copy.tracks[-1].items


def test_a_kill_leaves_the_previous_or_the_new_complete_outputs(tmp_path):
    song = tmp_path / "song"
    song.mkdir()
    sf.write(song / "vox.wav", signals.vocals(6.0).T, SR, subtype="PCM_16")
    (song / "p.RPP").write_text(RPP)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "fxmix", "reaper", "render", str(song / "p.RPP"), "-o", str(out / "mix.wav"),
            "--model", "none", "--write-rpp", str(out / "copy.RPP")]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    expected = sorted(p.name for p in out.iterdir())
    assert expected == ["copy.RPP", "mix.decisions.json", "mix.params.json", "mix.wav"]
    for delay in (0.5, 2.0, 4.0, 7.0):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _check_outputs(out, expected)
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    _check_outputs(out, expected)
    assert not [p for p in tmp_path.rglob(".*")]
