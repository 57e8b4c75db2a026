"""Reaper ``.RfxChain`` export: the chain text, the shipped JSFX it loads and how to install both.

An exported ``.RfxChain`` loads three JSFX shipped in ``plugin_presets/jsfx`` (fxmix PEQ, the stereo-linked
compressor, the utility with channel gains and gain); the master stage's chain adds the look-ahead
true-peak limiter (:mod:`fxmix.plugin_presets.master`). Chains load them by their path under Reaper's
``Effects`` folder, ``fxmix/<file>.jsfx``. :func:`copy_jsfx` puts those files into ``OUT/Effects/fxmix/`` next to the exported
chains, so the export folder holds everything Reaper needs; :func:`install_steps` says where they go.

Chain text, per effect: ``BYPASS 0 0 0``, ``<JS "fxmix/<file>.jsfx" ""``, one line of 64 slider values
(``-`` for sliders the effect does not declare), ``>``, ``FLOATPOS 0 0 0 0``, ``FXID {GUID}``, ``WAK 0 0``.
The slider values come from :meth:`fxmix.plugin_presets.exporters.ExportedChain.jsfx_sliders`.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..dsp.audio import atomic_path, writing
from ..dsp.errors import ConfigError

#: the shipped JSFX
JSFX_DIR = Path(__file__).with_name("jsfx")
#: per effect: path under Reaper's Effects folder (as the chain names it) and slider count
JSFX = {
    "peq": ("fxmix/fxmix_peq.jsfx", 26),
    "comp": ("fxmix/fxmix_comp.jsfx", 5),
    "utility": ("fxmix/fxmix_utility.jsfx", 6),
    "limiter": ("fxmix/fxmix_limiter.jsfx", 2),
    "exciter": ("fxmix/fxmix_exciter.jsfx", 5),
}
#: file name (without suffix) of the master stage's chain in an export (:mod:`fxmix.plugin_presets.master`)
MASTER_CHAIN = "fxmix-master"
#: Reaper writes 64 slider values per JS block ("-" = slider not used)
RFX_SLIDERS = 64
#: where the JSFX go inside an export folder (the same layout as Reaper's resource folder)
EFFECTS_SUBDIR = Path("Effects") / "fxmix"
#: Reaper's resource folder on each system (Options > Show REAPER resource path in explorer/finder)
RESOURCE_PATHS = {
    "Windows": r"%APPDATA%\REAPER  (C:\Users\<you>\AppData\Roaming\REAPER; a portable install: its own folder)",
    "macOS": "~/Library/Application Support/REAPER",
    "Linux": "~/.config/REAPER",
}


def _number(v: float) -> str:
    s = format(float(v), ".10g")
    return "0" if s == "-0" else s


def chain_text(name: str, sliders: Mapping[str, list[float]]) -> str:
    """The ``.RfxChain`` text for slider values per JSFX key (in :data:`JSFX` order); FX ids derive from
    ``name`` (the same export gives the same file)."""
    lines = []
    for i, (key, values) in enumerate(sliders.items()):
        if key not in JSFX:
            raise ConfigError(f"RfxChain {name!r}: {key!r} is not a shipped JSFX ({sorted(JSFX)})")
        path, n = JSFX[key]
        if len(values) != n:
            raise ConfigError(f"RfxChain {name!r}: {key} has {len(values)} slider values, its JSFX has {n}")
        tokens = [_number(v) for v in values] + ["-"] * (RFX_SLIDERS - n)
        guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fxmix/{name}/{i}/{key}")).upper()
        lines += [
            "BYPASS 0 0 0",
            f'<JS "{path}" ""',
            " ".join(tokens),
            ">",
            "FLOATPOS 0 0 0 0",
            f"FXID {{{guid}}}",
            "WAK 0 0",
        ]
    return "\n".join(lines) + "\n"


def shipped_jsfx() -> dict[str, Path]:
    """The shipped JSFX files by their path under Reaper's Effects folder ("fxmix/fxmix_peq.jsfx", ...)."""
    out = {}
    for path, _ in JSFX.values():
        src = JSFX_DIR / Path(path).name
        if not src.is_file():
            raise ConfigError(
                f"{src}: shipped JSFX missing; reinstall fxmix (pip install --force-reinstall fxmix)"
            )
        out[path] = src
    return out


def copy_jsfx(out_dir: str | Path) -> list[Path]:
    """Copy the JSFX the chains load into ``out_dir/Effects/fxmix/`` (byte for byte, atomically)."""
    written = []
    for path, src in shipped_jsfx().items():
        dst = Path(out_dir) / "Effects" / path
        with writing(dst), atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        written.append(dst)
    return written


def install_steps(out_dir: str | Path, chains: Iterable[str | Path]) -> str:
    """How to install an export folder's JSFX and chains into Reaper and load a chain on a track."""
    out = Path(out_dir)
    names = [Path(c).name for c in chains]
    where = "\n".join(f"     {system + ':':<9} {path}" for system, path in RESOURCE_PATHS.items())
    steps = [
        "Installing the .RfxChain export in REAPER:",
        "  1. Find REAPER's resource folder: Options > Show REAPER resource path in explorer/finder. Usually",
        where,
        "  2. Copy the folder",
        f"       {out / EFFECTS_SUBDIR}",
        "     into <resource folder>/Effects/, giving <resource folder>/Effects/fxmix/ with",
        f"     {', '.join(Path(p).name for p, _ in JSFX.values())} (the chains load them by that path).",
        "  3. Copy the .RfxChain files into <resource folder>/FXChains/ (a subfolder such as FXChains/fxmix/",
        f"     is fine): {', '.join(names) if names else '(none written)'}.",
        "  4. If REAPER was running, press F5 in the FX browser (or restart REAPER) so it sees the new JSFX.",
        "  5. Load a chain on a track: open the track's FX window (its FX button), then",
        "     FX > FX chains > Load FX chain... (or pick it under FX Chains in the Add FX browser, or drag the",
        "     .RfxChain file from your file manager onto the track). The chain is fxmix PEQ > fxmix compressor",
        "     (stereo-linked) > fxmix utility (L/R gain, gain); every value stays editable.",
    ]
    if f"{MASTER_CHAIN}.RfxChain" in names:
        steps += [
            f"  6. {MASTER_CHAIN}.RfxChain is the master stage: load it on the master track (its FX button in the",
            "     mixer): fxmix compressor (glue) > fxmix utility (gain) > fxmix limiter (true peak; REAPER",
            "     compensates its latency).",
        ]
    return "\n".join(steps)
