"""``fxmix listen build``: a listening test as a self-contained static web page plus the researcher's key.

Output (``TEST_DIR``)::

    TEST_DIR/page/index.html, listen.js   the page (copied from this package's ``page/`` folder)
    TEST_DIR/page/test.js                 the trials: ids, anonymous stimulus ids, attributes (no method names)
    TEST_DIR/page/audio/<stimulus>.js     each stimulus as base64 FLAC inside a script (loads from file://,
                                          where browsers refuse fetch/XHR of local files)
    TEST_DIR/key.json                     stimulus id -> method, song, excerpt, gains: keep it, do not send it
    TEST_DIR/results/                     where ``fxmix listen serve`` stores posted results

Send participants ``page/`` only. Trials: one training trial first (ratings not analysed), one trial per song,
then one earlier trial again with a new order (the consistency check for post-screening). Song order and the
order of the stimuli in every trial come from ``numpy.random.default_rng(seed)``; the same arguments give a
byte-identical folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...dsp.audio import atomic_folder, db_to_gain, read_audio, write_audio
from ...dsp.constants import SAMPLE_RATE
from ...dsp.errors import AudioInputError, ConfigError
from ...dsp.features import integrated_loudness
from .stimuli import (
    ATTRIBUTES,
    LISTENING_LUFS,
    LOUDNESS_TOLERANCE_LU,
    SongStimuli,
    find_songs,
    loop_fade,
    match_loudness,
    pick_excerpt,
    read_excerpt,
)

log = logging.getLogger(__name__)

PAGE_FILES = ("index.html", "listen.js")
PAGE_DIR = Path(__file__).resolve().parent / "page"
KEY_FILE = "key.json"
RESULTS_DIR = "results"
FORMAT_KEY = "fxmix-listening-key"
FORMAT_RESULTS = "fxmix-listening-results"


def _check_output(out: Path, source: Path) -> None:
    """Refuse an output that would replace the stimuli, collected results or an unrelated folder."""
    o, s = out.resolve(), source.resolve()
    if o == s or s in o.parents or o in s.parents:
        raise ConfigError(f"-o {out}: it overlaps the stimuli folder {source}; choose a folder outside it")
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"-o {out}: exists and is not a folder; choose a new folder")
        if any((out / RESULTS_DIR).glob("*.json")):
            raise ConfigError(f"-o {out}: holds collected results in {RESULTS_DIR}/; choose a new folder")
        if any(out.iterdir()) and not (out / KEY_FILE).is_file():
            raise ConfigError(
                f"-o {out}: is a non-empty folder that is not a listening test; choose a new folder"
            )


def _choose(
    songs: list[SongStimuli], n_songs: int | None, methods: Sequence[str] | None, rng: np.random.Generator
) -> tuple[list[SongStimuli], list[str]]:
    """The songs (seeded choice and order) and the methods every one of them has."""
    common = [m for m in songs[0].methods if all(m in s.methods for s in songs)]
    wanted = list(methods) if methods else common
    for s in songs:
        missing = [m for m in wanted if m not in s.methods]
        if missing:
            raise ConfigError(
                f"{s.folder}: has no {', '.join(missing)} (it has {', '.join(s.methods)}); fix --methods"
            )
    if len(wanted) < 2:
        raise ConfigError(f"--methods: a test needs at least two methods, got {wanted}")
    if len(wanted) > len(string.ascii_uppercase):
        raise ConfigError(
            f"--methods: at most {len(string.ascii_uppercase)} methods per trial, got {len(wanted)}"
        )
    if n_songs is not None and not 1 <= n_songs <= len(songs):
        raise ConfigError(f"--songs {n_songs}: choose 1 to {len(songs)} (songs found)")
    order = rng.permutation(len(songs))[: n_songs or len(songs)]
    return [songs[i] for i in order], wanted


def _trial_plan(n_songs: int, rng: np.random.Generator) -> list[dict]:
    """Trials: training (song 0), one per song, then a repeat of a seeded earlier trial."""
    plan = [{"id": "t00", "kind": "training", "song": 0}]
    plan += [{"id": f"t{i + 1:02d}", "kind": "trial", "song": i} for i in range(n_songs)]
    again = int(rng.integers(n_songs))
    plan.append(
        {"id": f"t{n_songs + 1:02d}", "kind": "repeat", "song": again, "repeat_of": f"t{again + 1:02d}"}
    )
    return plan


def _song_excerpts(song: SongStimuli, methods: list[str], excerpt_s: float) -> tuple[dict, dict, dict]:
    """Loudness-matched, faded excerpts of every method of one song, the excerpt's place and the gains."""
    n = max(read_audio(song.methods[m], SAMPLE_RATE).audio.shape[-1] for m in methods)
    stems = {c: read_audio(p, SAMPLE_RATE).audio for c, p in song.stems.items()}
    if not stems:
        log.warning("%s: no stems listed, the excerpt starts at the song's start", song.folder)
    start, stop = pick_excerpt(n, SAMPLE_RATE, excerpt_s, stems)
    raw = {
        m: loop_fade(read_excerpt(song.methods[m], start, stop, SAMPLE_RATE), SAMPLE_RATE) for m in methods
    }
    try:
        level, gains = match_loudness(raw, SAMPLE_RATE, LISTENING_LUFS)
    except AudioInputError as exc:
        raise AudioInputError(f"{song.folder}: {exc}") from exc
    audio = {m: (raw[m] * np.float32(db_to_gain(gains[m]))).astype(np.float32) for m in methods}
    where = {
        "song": song.name,
        "start_s": round(start / SAMPLE_RATE, 4),
        "stop_s": round(stop / SAMPLE_RATE, 4),
    }
    return audio, where, {"level": level, "gains": gains}


def _encode(audio: np.ndarray, scratch: Path, sid: str, level: float) -> tuple[bytes, float]:
    """16-bit FLAC bytes (CD quality) of a stimulus (decoded by every current browser's Web Audio) and the loudness of
    what was encoded, checked against the test's level."""
    write_audio(scratch, audio, SAMPLE_RATE, subtype="PCM_16")
    lufs = integrated_loudness(read_audio(scratch, SAMPLE_RATE).audio, SAMPLE_RATE)
    data = scratch.read_bytes()
    scratch.unlink()
    if not abs(lufs - level) <= LOUDNESS_TOLERANCE_LU:
        raise AudioInputError(f"stimulus {sid}: {lufs:.2f} LUFS after encoding, not {level:.2f}")
    return data, lufs


def _write_stimulus(page: Path, sid: str, flac: bytes) -> None:
    b64 = base64.b64encode(flac).decode("ascii")
    text = f'(window.fxlistenAudio = window.fxlistenAudio || {{}})["{sid}"] = "{b64}";\n'
    (page / "audio" / f"{sid}.js").write_text(text, encoding="ascii")


def build_test(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    excerpt_s: float = 15.0,
    songs: int | None = None,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Build a listening test from a saved-audio folder (``fxmix eval --save-audio``). Returns ``out``.

    Args:
        source: the saved-audio folder.
        out: the test folder (replaced whole; refused when it holds results or is not a test).
        excerpt_s: excerpt length (s); shorter songs are used whole.
        songs: how many songs (a seeded choice); default all.
        methods: method labels to compare; default every label all songs have (the target mix included).
        seed: song choice, stimulus order per trial and the repeated trial.
        progress: tqdm bar.

    Raises:
        ConfigError: bad folders, unknown methods, bad counts. AudioInputError: a silent excerpt.
    """
    source, out = Path(source), Path(out)
    if not excerpt_s > 0:
        raise ConfigError(f"--excerpt-s {excerpt_s}: must be > 0")
    _check_output(out, source)
    rng = np.random.default_rng(seed)
    chosen, wanted = _choose(find_songs(source), songs, methods, rng)
    plan = _trial_plan(len(chosen), rng)
    with atomic_folder(out) as tmp:
        page = tmp / "page"
        (page / "audio").mkdir(parents=True)
        (tmp / RESULTS_DIR).mkdir()
        for name in PAGE_FILES:
            shutil.copyfile(PAGE_DIR / name, page / name)
        excerpts = {}
        for i, song in enumerate(tqdm(chosen, desc="listen build", unit="song", disable=not progress)):
            excerpts[i] = _song_excerpts(song, wanted, excerpt_s)
        key_trials = [_write_trial(t, excerpts[t["song"]], wanted, rng, page, tmp) for t in plan]
        _write_config(tmp, page, key_trials, seed, excerpt_s, source)
    return out


def _write_trial(t: dict, excerpt: tuple, wanted: list[str], rng, page: Path, tmp: Path) -> dict:
    """Write one trial's stimuli in a seeded random order; return its key entry."""
    audio, where, loud = excerpt
    order = [wanted[j] for j in rng.permutation(len(wanted))]
    stimuli = {}
    for letter, m in zip(string.ascii_lowercase, order):
        sid = f"{t['id']}-{letter}"
        flac, lufs = _encode(audio[m], tmp / ".encode.flac", sid, loud["level"])
        _write_stimulus(page, sid, flac)
        stimuli[sid] = {"method": m, "gain_db": round(float(loud["gains"][m]), 3), "lufs": round(lufs, 3)}
    entry = {k: v for k, v in t.items() if k != "song"}
    return {**entry, **where, "level_lufs": round(float(loud["level"]), 3), "stimuli": stimuli}


def _write_config(
    tmp: Path, page: Path, key_trials: list[dict], seed: int, excerpt_s: float, source: Path
) -> None:
    """key.json (researcher) and page/test.js (participant: ids only), sharing one test id."""
    key = {
        "format": FORMAT_KEY,
        "version": 1,
        "seed": int(seed),
        "excerpt_s": float(excerpt_s),
        "level_lufs": LISTENING_LUFS,
        "source": str(source),
        "attributes": [a[0] for a in ATTRIBUTES],
        "trials": key_trials,
    }
    test_id = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    key = {
        "format": FORMAT_KEY,
        "version": 1,
        "test_id": test_id,
        **{k: v for k, v in key.items() if k not in ("format", "version")},
    }
    (tmp / KEY_FILE).write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    config = {
        "format": FORMAT_RESULTS,
        "test_id": test_id,
        "attributes": [{"id": a, "label": label, "question": q} for a, label, q in ATTRIBUTES],
        "trials": [
            {
                "id": t["id"],
                "kind": t["kind"],
                "stimuli": list(t["stimuli"]),
                **({"repeat_of": t["repeat_of"]} if "repeat_of" in t else {}),
            }
            for t in key_trials
        ],
    }
    text = "window.FXLISTEN_TEST = " + json.dumps(config, indent=1) + ";\n"
    (page / "test.js").write_text(text, encoding="utf-8")


def read_key(path: str | os.PathLike) -> dict:
    """A test's key.json (checked)."""
    path = Path(path)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read the test key ({exc}); give TEST_DIR/{KEY_FILE} with --key"
        ) from exc
    if not isinstance(key, dict) or key.get("format") != FORMAT_KEY:
        raise ConfigError(
            f"{path}: not a listening-test key (format {FORMAT_KEY!r}); give TEST_DIR/{KEY_FILE}"
        )
    return key
