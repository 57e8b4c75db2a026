"""Name -> network class registry, so a weights file's JSON sidecar picks its class by name (no pickles)."""

from __future__ import annotations

from fxmix.dsp.errors import ModelLoadError

ARCHS: dict[str, type] = {}


def register(name: str):
    """Class decorator: ``@register("paper")`` makes the class loadable from a sidecar ``{"arch": "paper"}``."""

    def deco(cls):
        ARCHS[name] = cls
        cls.arch_name = name
        return cls

    return deco


def get_arch(name: str) -> type:
    # importing the network modules fills the registry
    from . import nets  # noqa: F401

    try:
        from . import causal  # noqa: F401
    except ImportError:  # pragma: no cover - causal net module not present yet
        pass
    if name not in ARCHS:
        raise ModelLoadError(f"unknown network architecture {name!r}; known: {sorted(ARCHS)}")
    return ARCHS[name]
