"""Writing what an offline run produces: the mix and normalized stems in the format asked for, params.json.

A run writes one *unit*: either a folder (``OUT/<song>/`` of a batch, the ``normalize`` output folder) that is
built under a temporary name and swapped into place, or a single mix file plus its ``.params.json`` (the mix is
written last: a params file never describes a mix that is not there). Destinations are checked before any
work starts, so a job never runs for minutes to fail on a read-only folder or an output equal to an input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from fxmix.dsp import constants as C
from fxmix.dsp.audio import atomic_folder, atomic_path, resample, write_audio, write_text_atomic, writing
from fxmix.dsp.errors import ConfigError

#: Output sample formats: name -> soundfile subtype for WAV (FLAC cannot hold float; it takes PCM_24).
FORMATS = {"float32": "FLOAT", "int24": "PCM_24", "int16": "PCM_16"}


def subtype_for(path: Path, fmt: str | None) -> str | None:
    """The soundfile subtype for ``path`` in format ``fmt`` (None: the writer's default for the suffix)."""
    if fmt is None:
        return None
    if path.suffix.lower() == ".flac" and fmt == "float32":
        raise ConfigError(f"{path}: FLAC cannot store float samples; use --int24 or a .wav output")
    return FORMATS[fmt]


def check_destination(out: Path, inputs: Iterable[Path]) -> None:
    """Refuse, before any work, an output that is an input or lies where nothing can be written."""
    resolved_inputs = {Path(p).resolve() for p in inputs}
    if out.resolve() in resolved_inputs:
        raise ConfigError(f"{out}: this is one of the inputs; choose another output path (inputs are never overwritten)")
    parent = out if out.is_dir() or not out.suffix else out.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{out}: {probe} is a file, not a folder; choose another output path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: cannot write in {probe} (permission denied); choose another output path")


def clipping_notes(mix: np.ndarray, path: Path, subtype: str | None) -> list[str]:
    """What the written file does to samples above full scale, in words."""
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    return clipping_notes_for(path, subtype, peak, int(np.count_nonzero(np.abs(mix) > 1.0)) if peak > 1.0 else 0)


def clipping_notes_for(path: Path, subtype: str | None, peak: float, n: int) -> list[str]:
    """:func:`clipping_notes` from the mix's sample peak (linear) and its count of samples above full scale."""
    if peak <= 1.0:
        return []
    db = 20 * np.log10(peak)
    fixed = subtype not in (None, "FLOAT", "DOUBLE") or path.suffix.lower() == ".flac"
    if fixed:
        return [f"{path.name}: the mix peaks at {db:+.2f} dBFS; {n} samples clip in this integer format "
                "(write float32 WAV to keep them, or lower the level)"]
    return [f"{path.name}: the mix peaks at {db:+.2f} dBFS; kept as float (no clipping), lower it before "
            "converting to an integer format"]


def write_mix(path: Path, mix: np.ndarray, rate: int, fmt: str | None, protect: Iterable[Path]) -> tuple[str, list[str]]:
    """The mix at the inputs' rate -> ``path``; returns (path written, notes)."""
    subtype = subtype_for(path, fmt)
    audio = resample(mix, C.SAMPLE_RATE, rate)
    notes = clipping_notes(audio, path, subtype)
    return str(write_audio(path, audio, rate, subtype=subtype, protect=protect)), notes


def write_mix_with_params(
    path: Path, mix: np.ndarray, rate: int, fmt: str | None, protect: Iterable[Path], doc: dict,
    extra: Mapping[Path, dict] | None = None,
) -> dict:
    """A lone mix file and its ``.params.json`` (``doc`` + the mix's notes), both fully written under temporary
    names before either replaces its destination: a kill leaves the previous pair, or the new mix with at worst
    the previous params for the microseconds between the two renames. ``extra`` JSON files (path -> document,
    e.g. ``NAME.decisions.json``) are written and renamed with the params."""
    subtype = subtype_for(path, fmt)
    audio = resample(mix, C.SAMPLE_RATE, rate)
    doc = dict(doc, notes=doc.get("notes", []) + clipping_notes(audio, path, subtype))
    params = path.with_suffix(".params.json")
    with writing(params), ExitStack() as stack:
        for extra_path, extra_doc in (extra or {}).items():
            tmp_extra = stack.enter_context(atomic_path(extra_path))
            Path(tmp_extra).write_text(json.dumps(extra_doc, indent=1) + "\n", encoding="utf-8")
        tmp = stack.enter_context(atomic_path(params))
        Path(tmp).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        write_audio(path, audio, rate, subtype=subtype, protect=protect)
    return doc


def write_stems(folder: Path, stems: dict[str, np.ndarray], rate: int, fmt: str | None, protect) -> dict[str, str]:
    return {name: write_stem(folder, name, x, rate, fmt, protect) for name, x in stems.items()}


def write_stem(folder: Path, name: str, x: np.ndarray, rate: int, fmt: str | None, protect) -> str:
    """``folder/<name>.wav`` in ``fmt``'s sample format at ``rate``; returns its path."""
    path = folder / f"{name}.wav"
    return str(write_audio(path, resample(x, C.SAMPLE_RATE, rate), rate, subtype=subtype_for(path, fmt),
                           protect=protect))


def write_json(path: Path, doc: dict) -> str:
    return str(write_text_atomic(path, json.dumps(doc, indent=1) + "\n"))


__all__ = ["FORMATS", "atomic_folder", "check_destination", "clipping_notes", "subtype_for", "write_json",
           "write_mix", "write_stem", "write_stems"]
