"""``fxmix models``: the packaged models, what each is, what it was trained on and how it scored.

Reads each packaged folder's sidecar (``model.json``) and card (``model_card.json``, when there is one)
without loading weights, so it is instant. ``--json`` prints the same as one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fxmix.dsp.errors import FxmixError
from fxmix.model import default_model_path
from fxmix.model.states import CARD_NAME, read_sidecar

#: packaged model names in the order they are listed; ``none`` is the effect-normalized sum (no network)
PACKAGED = ("offline", "causal", "console")
_ROLE = {
    "offline": "default for `mix`, `demo`, `reaper render`, `preset export` (four class buses, waveform network)",
    "causal": "default for `serve` and streaming (four class buses, causal waveform network)",
    "console": "track-level console mixer: per-track gain, pan, EQ, compressor and send",
}


def _weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6


def describe(name: str) -> dict | None:
    """One packaged model as a dict (None when this fxmix does not ship it)."""
    folder = default_model_path(name)
    if folder is None:
        return None
    sidecar = read_sidecar(folder)
    card = {}
    if (folder / CARD_NAME).is_file():
        card = json.loads((folder / CARD_NAME).read_text(encoding="utf-8"))
    training = sidecar.get("training") or {}
    return {
        "name": name,
        "role": _ROLE.get(name, ""),
        "arch": sidecar.get("arch"),
        "n_parameters": sidecar.get("n_parameters"),
        "size_mb": round(_weights_mb(folder), 2),
        "latency_samples": sidecar.get("latency_samples"),
        "profile": training.get("profile") or card.get("profile"),
        "training_data": card.get("training_data") or training.get("corpus"),
        "training": card.get("training"),
        "limits": card.get("limits"),
        "metrics": {k: v for k, v in card.items() if k.startswith("metrics")},
        "folder": str(folder),
    }


def _print_text(rows: list[dict]) -> None:
    for r in rows:
        print(f"{r['name']}: {r['arch']}, {r['n_parameters']:,} parameters, {r['size_mb']} MB, "
              f"latency {r['latency_samples']} samples")
        for key in ("role", "profile", "training_data", "training", "limits"):
            if r.get(key):
                print(f"  {key.replace('_', ' ')}: {r[key]}")
        for table, systems in r["metrics"].items():
            print(f"  {table.replace('_', ' ')}:")
            for system, metrics in systems.items():
                figures = ", ".join(f"{m} {v:.3g}" for m, v in metrics.items() if isinstance(v, (int, float)))
                print(f"    {system:<22} {figures}")
    print("none: no network; the effect-normalized sum (`--model none`)")
    print(f"total shipped: {sum(r['size_mb'] for r in rows):.2f} MB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fxmix models", description="List the packaged models with their cards.")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    args = p.parse_args(argv)
    try:
        rows = [r for r in (describe(n) for n in PACKAGED) if r is not None]
    except (FxmixError, OSError, ValueError) as exc:
        print(f"fxmix models: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"models": rows}, indent=1))
    else:
        _print_text(rows)
    return 0
