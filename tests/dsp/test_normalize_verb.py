"""`fxmix normalize` runs no network: loading its verb must not load torch (seconds of start-up, ~0.2 GB)."""

import subprocess
import sys


def test_normalize_verb_does_not_import_torch():
    code = "import sys, fxmix.verbs.offline; print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_default_profile_is_read_without_torch(tmp_path):
    """Without --profile the verb reads the default model's training profile from its sidecar alone."""
    code = (
        "import sys, argparse, fxmix.verbs.offline as o;"
        "p = o.run_profile(argparse.Namespace(profile=None, model='default'));"
        "print(p.name, sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]"), out
    from fxmix.model.names import training_profile

    assert out.split()[0] == training_profile("default")
