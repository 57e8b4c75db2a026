"""``fxmix listen serve``: the test page on localhost, and results posted by it stored under ``results/``.

Only ``page/`` is served (the key stays private); ``POST /results`` takes one results JSON (at most
:data:`MAX_RESULTS_BYTES`) of this test and writes it atomically as ``results/<participant>-<n>.json``, never over
an earlier file. Binds 127.0.0.1 by default: a lab machine where each participant sits at the server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ...dsp.audio import write_text_atomic
from ...dsp.errors import ConfigError
from .build import FORMAT_RESULTS, KEY_FILE, RESULTS_DIR, read_key

log = logging.getLogger(__name__)

MAX_RESULTS_BYTES = 1 << 20
_LOCK = threading.Lock()


def save_results(test_dir: Path, payload: dict) -> Path:
    """Store one participant's results under ``results/`` with a fresh name."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(payload.get("participant") or "anonymous"))[:40] or "anonymous"
    folder = test_dir / RESULTS_DIR
    folder.mkdir(exist_ok=True)
    with _LOCK:
        k = 1
        while (folder / f"{name}-{k}.json").exists():
            k += 1
        return write_text_atomic(folder / f"{name}-{k}.json", json.dumps(payload, indent=1) + "\n")


class _Handler(SimpleHTTPRequestHandler):
    test_dir: Path
    test_id: str

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: HTTPStatus, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") not in ("/results",):
            self._reply(HTTPStatus.NOT_FOUND, {"error": "POST to /results"})
            return
        n = int(self.headers.get("Content-Length") or 0)
        if not 0 < n <= MAX_RESULTS_BYTES:
            self._reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"results must be 1..{MAX_RESULTS_BYTES} bytes"},
            )
            return
        try:
            payload = json.loads(self.rfile.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "not JSON"})
            return
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_RESULTS:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"not {FORMAT_RESULTS}"})
            return
        if payload.get("test_id") != self.test_id:
            self._reply(HTTPStatus.CONFLICT, {"error": "results of another test"})
            return
        path = save_results(self.test_dir, payload)
        log.info("saved %s", path)
        self._reply(HTTPStatus.OK, {"saved": path.name})


def make_server(
    test_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000
) -> ThreadingHTTPServer:
    """An HTTP server for ``test_dir`` (port 0: any free port); call ``serve_forever``."""
    test_dir = Path(test_dir)
    page = test_dir / "page"
    if not (page / "index.html").is_file():
        raise ConfigError(f"{test_dir}: no page/index.html; build the test first with `fxmix listen build`")
    key = read_key(test_dir / KEY_FILE)
    handler = type("Handler", (_Handler,), {"test_dir": test_dir, "test_id": key["test_id"]})
    return ThreadingHTTPServer((host, port), functools.partial(handler, directory=str(page)))
