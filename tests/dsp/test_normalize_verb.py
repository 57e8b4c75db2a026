"""`fxmix normalize` runs no network: loading its verb must not load torch (seconds of start-up, ~0.2 GB)."""

import subprocess
import sys


def test_normalize_verb_does_not_import_torch():
    code = "import sys, fxmix.verbs.offline; print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
