"""``fxmix export CKPT -o DIR [--torchscript] [--onnx]``: a release folder (:func:`fxmix.model.export.export_model`)."""

from __future__ import annotations

import argparse
import os
import sys

from fxmix.model.export import export_model
from fxmix.model.states import CARD_NAME


def get_export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix export", description="Export a checkpoint to a release folder (+ TorchScript / ONNX)."
    )
    p.add_argument(
        "checkpoint", help="checkpoint folder (model.safetensors + model.json) or .safetensors file"
    )
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--torchscript", action=argparse.BooleanOptionalAction, default=False, help="write model.ts"
    )
    p.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=False, help="write model.onnx")
    p.add_argument("--parity-s", type=float, default=10.0, help="input length of the parity check (s)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``fxmix export CKPT -o DIR [--torchscript] [--onnx]``. Exit 3 when the parity check fails."""
    args = get_export_parser().parse_args(argv)
    card = export_model(
        args.checkpoint, args.out, torchscript=args.torchscript, onnx=args.onnx, parity_s=args.parity_s
    )
    print(
        f"exported {card['arch']} ({card['n_parameters']} params) to {args.out}: {', '.join(card['files'])}"
    )
    parity = card["parity"]
    if parity is not None:
        figures = ", ".join(f"{k} {v:.2e}" for k, v in parity.items() if k.endswith("_max_abs"))
        print(f"parity vs eager on {parity['seconds']} s: {figures} (tolerance {parity['tolerance']:.0e})")
        if not parity["ok"]:
            print(
                f"fxmix export: parity check FAILED; see {os.path.join(args.out, CARD_NAME)}", file=sys.stderr
            )
            return 3
    return 0
