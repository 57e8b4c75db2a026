"""Bad input and hard stops on the offline path: a clear error before any work, nothing lost, nothing half-written."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import soundfile as sf
from fxmix.dsp.profile import load_profile
from support import signals

from fxmix.cli import main

SR = signals.SR


def _song(folder, seconds=2.0, names=("vocals", "drums", "bass", "other")):
    folder.mkdir(parents=True, exist_ok=True)
    song = signals.song(seconds)
    for c in names:
        sf.write(folder / f"{c}.wav", song[c].T, SR, subtype="PCM_16")
    return folder


def _run(args, timeout=300):
    """The real command in a child process: (exit code, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "fxmix", *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stderr


def test_a_profile_without_a_class_refuses_its_files_by_name(tmp_path, capsys):
    d = _song(tmp_path / "song")
    doc = load_profile("musdb18-reference").to_dict()
    doc["classes"] = [c for c in doc["classes"] if c != "vocals"]
    doc["targets"].pop("vocals")
    prof = tmp_path / "no-vocals.json"
    prof.write_text(json.dumps(doc))
    assert main(["mix", str(d), "-o", str(tmp_path / "m.wav"), "--model", "none", "--profile", str(prof)]) == 1
    err = capsys.readouterr().err
    assert "vocals.wav" in err and "--map" in err
    assert not (tmp_path / "m.wav").exists()


def test_destinations_are_checked_before_any_work(tmp_path, capsys):
    d = _song(tmp_path / "song")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t0 = time.perf_counter()
    assert main(["mix", str(d), "-o", str(blocker / "out" / "m.wav"), "--model", "none"]) == 1
    assert main(["mix", str(d), "-o", str(d / "vocals.wav"), "--model", "none"]) == 1
    assert main(["normalize", str(d), "-o", str(d)]) == 1  # a folder with files fxmix did not write
    assert time.perf_counter() - t0 < 5.0  # refused up front, not after normalizing
    err = capsys.readouterr().err
    assert "is a file" in err and "one of the inputs" in err and "not an fxmix output" in err
    assert "Traceback" not in err


def test_a_full_disk_is_one_clear_error_and_leaves_no_partial_file(tmp_path):
    d = _song(tmp_path / "song", seconds=4.0)
    out = tmp_path / "out"
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); from fxmix.cli import main; "
        f"sys.exit(main(['mix', {str(d)!r}, '-o', {str(out)!r}, '--model', 'none']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.rglob("*.wav"))
    assert not list(tmp_path.rglob(".*part")) and not list(tmp_path.rglob(".*tmpdir"))


def test_a_truncated_wav_is_called_truncated(tmp_path):
    d = _song(tmp_path / "song", names=("vocals", "bass"))
    data = (d / "bass.wav").read_bytes()
    (d / "bass.wav").write_bytes(data[: len(data) - 20_000])
    out = tmp_path / "m.wav"
    assert main(["mix", str(d), "-o", str(out), "--model", "none"]) == 0
    notes = json.loads(out.with_suffix(".params.json").read_text())["notes"]
    assert any("bass.wav: truncated" in n for n in notes)


def test_a_pipe_among_the_inputs_is_refused_without_hanging(tmp_path):
    d = _song(tmp_path / "song", names=("vocals",))
    os.mkfifo(d / "drums.wav")
    rc, err = _run(["mix", str(d), "-o", str(tmp_path / "m.wav"), "--model", "none"], timeout=120)
    assert rc == 1 and "not a regular file" in err and "Traceback" not in err


RPP = """<REAPER_PROJECT 0.1 "7.0" 1
  <TRACK
    NAME "Lead Vox"
    VOLPAN {vol} 0 -1 -1 1
    <ITEM
      POSITION {pos}
      LENGTH 2
      <SOURCE WAVE
        FILE "{file}"
      >
    >{nest}
  >
>
"""


@pytest.mark.parametrize(
    ("case", "fields", "message"),
    [
        ("far position", {"pos": "1e12"}, "outside +/-86400"),
        ("huge fader", {"vol": "1e30"}, "outside +/-1000"),
        ("pipe media", {"file": "pipe.wav"}, "not regular files"),
        ("long window", {"pos": "7200"}, "longer than 1 h"),
    ],
)
def test_damaged_reaper_projects_get_clear_errors(tmp_path, case, fields, message):
    sf.write(tmp_path / "a.wav", signals.vocals(2.0).T, SR)
    os.mkfifo(tmp_path / "pipe.wav")
    rpp = tmp_path / "p.RPP"
    rpp.write_text(RPP.format(**({"vol": "1", "pos": "0", "file": "a.wav", "nest": ""} | fields)))
    rc, err = _run(["reaper", "render", str(rpp), "-o", str(tmp_path / "m.wav"), "--model", "none"], timeout=120)
    assert rc == 1 and message in err and "Traceback" not in err, (case, err)


def test_deeply_nested_reaper_chunks_render_and_write_back(tmp_path):
    sf.write(tmp_path / "a.wav", signals.vocals(2.0).T, SR)
    nest = "\n" + "\n".join(["    <X"] * 5000 + ["    >"] * 5000)
    rpp = tmp_path / "p.RPP"
    rpp.write_text(RPP.format(vol="1", pos="0", file="a.wav", nest=nest))
    rc, err = _run(["reaper", "render", str(rpp), "-o", str(tmp_path / "m.wav"), "--model", "none",
                    "--write-rpp", str(tmp_path / "copy.RPP")])
    assert rc == 0 and "Traceback" not in err, err
    assert (tmp_path / "copy.RPP").is_file() and (tmp_path / "m.params.json").is_file()


@pytest.mark.parametrize("verb", ["normalize", "mix"])
def test_a_kill_leaves_the_previous_or_the_new_complete_output(tmp_path, verb):
    """kill -9 at several moments of a run over a previous output: the folder is always a complete output (the
    previous or the new one), and the next run succeeds and leaves no temporary files."""
    d = _song(tmp_path / "song", seconds=6.0)
    out = tmp_path / "out"
    args = [verb, str(d), "-o", str(out), "--model", "none"]
    assert _run(args)[0] == 0
    folder = out if verb == "normalize" else out / "song"
    expected = sorted(p.name for p in folder.iterdir())
    for delay in (0.5, 2.0, 3.5, 5.0):
        proc = subprocess.Popen([sys.executable, "-m", "fxmix", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert sorted(p.name for p in folder.iterdir()) == expected, delay
        doc = json.loads((folder / "params.json").read_text())
        for path in doc["outputs"].values():
            assert sf.info(path).frames > 0
    assert _run(args)[0] == 0
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".gitignore"]
