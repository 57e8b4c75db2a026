"""``fxmix listen build|serve|analyze``: a listening test as a static web page, served locally, analysed."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fxmix.training.listening.analysis import (
    ALPHA,
    REPEAT_THRESHOLD,
    analyze,
    format_report,
    plot_boxplots,
    write_json,
)
from fxmix.training.listening.build import build_test
from fxmix.training.listening.server import make_server
from fxmix.training.listening.stimuli import LISTENING_LUFS

log = logging.getLogger("fxmix")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fxmix listen", description="Listening test: build the page, serve it, analyse results."
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build",
        help="build a test from `fxmix eval --save-audio DIR`",
        description=f"Excerpts (where the most classes play), loudness-matched to {LISTENING_LUFS:g} "
        "LUFS, anonymised and shuffled per trial; a static page in TEST_DIR/page, the key in "
        "TEST_DIR/key.json (keep it, send only page/).",
    )
    b.add_argument("source", help="the folder written by `fxmix eval --save-audio`")
    b.add_argument("-o", "--out", required=True, help="test folder to write (TEST_DIR)")
    b.add_argument("--excerpt-s", type=float, default=15.0, help="excerpt length in seconds (default 15)")
    b.add_argument("--songs", type=int, default=None, help="how many songs (a seeded choice; default all)")
    b.add_argument(
        "--methods", nargs="*", default=None, help="method labels (default: all, the target mix included)"
    )
    b.add_argument(
        "--seed", type=int, default=0, help="song choice, stimulus order, repeated trial (default 0)"
    )
    b.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("serve", help="serve TEST_DIR/page on localhost and store posted results")
    s.add_argument("test_dir")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    a = sub.add_parser("analyze", help="statistics of results JSON files (or folders of them)")
    a.add_argument("results", nargs="+", help="results files or folders (e.g. TEST_DIR/results)")
    a.add_argument("--key", default=None, help="the test's key.json (default: found next to the results)")
    a.add_argument(
        "--threshold",
        type=float,
        default=REPEAT_THRESHOLD,
        help=f"post-screening: largest mean repeat difference in points (default {REPEAT_THRESHOLD:g})",
    )
    a.add_argument("--alpha", type=float, default=ALPHA, help=f"significance level (default {ALPHA:g})")
    a.add_argument("--json", default=None, help="write the full analysis here")
    a.add_argument("--plot", action="store_true", help="box plots per attribute (PNG)")
    a.add_argument("--plot-file", default="listening_boxplots.png", help="where --plot writes")
    return p


def _serve(args) -> int:
    server = make_server(args.test_dir, args.host, args.port)
    host, port = server.server_address[:2]
    print(
        f"serving {Path(args.test_dir) / 'page'} at http://{host}:{port}/ (results into "
        f"{Path(args.test_dir) / 'results'}); Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``fxmix listen``: build (:func:`build_test`), serve (:func:`make_server`), analyze (:func:`analyze`)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "build":
        out = build_test(
            args.source,
            args.out,
            excerpt_s=args.excerpt_s,
            songs=args.songs,
            methods=args.methods,
            seed=args.seed,
            progress=not args.no_progress,
        )
        print(f"wrote {out / 'page'} (send this to participants) and {out / 'key.json'} (keep this)")
        return 0
    if args.command == "serve":
        return _serve(args)
    res = analyze(args.results, args.key, threshold=args.threshold, alpha=args.alpha)
    print(format_report(res))
    if args.json:
        print(f"wrote {write_json(args.json, res)}")
    if args.plot:
        print(f"wrote {plot_boxplots(res, args.plot_file)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
