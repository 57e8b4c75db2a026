"""`fxmix` command-line entry point: a table of verbs, each a thin ``main(argv) -> int`` in its package.

Modules are imported lazily so `fxmix --help` and light verbs start fast and a verb whose optional
dependency is missing fails alone, with its own message.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from fxmix import __version__
from fxmix.dsp.errors import FxmixError

# verb -> (module:function, one-line help). Each function takes argv (list[str]) and returns an exit code.
VERBS: dict[str, tuple[str, str]] = {
    "demo": ("fxmix.verbs.offline:demo_main", "mix the bundled demo multitrack (README's main job)"),
    "mix": ("fxmix.verbs.offline:mix_main", "automix a folder of stems into a stereo mix"),
    "normalize": ("fxmix.verbs.offline:normalize_main", "effect-normalize stems, write params.json"),
    "profile": ("fxmix.verbs.profile:main", "compute / merge / inspect per-class profiles"),
    "data": (
        "fxmix.verbs.data:main",
        "synthetic wet corpus (synth) and dataset statistics (stats)",
    ),
    "train": ("fxmix.verbs.train:main", "train a mixing network from a TOML config"),
    "eval": ("fxmix.verbs.eval:main", "evaluate models and baselines on a dataset split"),
    "listen": ("fxmix.verbs.listen:main", "listening test: build the web page, serve it, analyze ratings"),
    "export": ("fxmix.verbs.export:main", "export a checkpoint to TorchScript / ONNX + model card"),
    "serve": ("fxmix.verbs.serve:main", "real-time OSC server for DAW sessions"),
    "client": ("fxmix.verbs.client:main", "stream WAV stems to an fxmix server"),
    "reaper": ("fxmix.verbs.reaper:main", "inspect / render Reaper .RPP projects"),
    "preset": ("fxmix.verbs.preset:main", "factory presets and export of mix decisions"),
    "models": ("fxmix.verbs.models:main", "list the packaged models with their cards and figures"),
    "bench": ("fxmix.cli:bench_main", "benchmarks: normalize, mix, synth, model, stream, bridge, reaper"),
}

BENCHES: dict[str, str] = {
    "normalize": "fxmix.bench.normalize:main",
    "mix": "fxmix.bench.mix:main",
    "synth": "fxmix.bench.synth:main",
    "model": "fxmix.bench.model:main",
    "stream": "fxmix.bench.stream:main",
    "bridge": "fxmix.bench.bridge:main",
    "reaper": "fxmix.bench.reaper:main",
}


def _load(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _usage() -> str:
    lines = ["usage: fxmix <verb> [options]   (fxmix <verb> --help for each verb)", "", "verbs:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in VERBS.items()]
    return "\n".join(lines)


def bench_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        print("usage: fxmix bench {" + ",".join(BENCHES) + "} [options]")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return int(_load(BENCHES[argv[0]])(argv[1:]) or 0)


#: Global flags, accepted anywhere on the command line (no verb defines them).
QUIET, VERBOSE = ("-q", "--quiet"), ("-v", "--verbose")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (tests and hosts replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: int) -> None:
    """fxmix's messages on its own logger only (``fxmix: ...`` on stderr); other libraries' logging is left
    alone, so their chatter never reads as an fxmix line."""
    logger = logging.getLogger("fxmix")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("fxmix: %(message)s"))
        logger.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``fxmix [-q|-v] <verb> ...``. Typed fxmix errors print one clear line and exit 1.

    ``-q`` shows warnings and errors only (no progress bars), ``-v`` adds debug messages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    level = logging.INFO
    if any(a in QUIET for a in argv):
        level = logging.WARNING
    if any(a in VERBOSE for a in argv):
        level = logging.DEBUG
    argv = [a for a in argv if a not in QUIET + VERBOSE]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"fxmix {__version__}")
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"fxmix: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    configure_logging(level)
    try:
        return int(_load(VERBS[verb][0])(rest) or 0)
    except FxmixError as exc:
        print(f"fxmix {verb}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`fxmix models | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when stdout is flushed
        return 141


if __name__ == "__main__":
    sys.exit(main())
