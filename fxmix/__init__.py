"""fxmix: automatic music mixing backend for DAWs.

The code lives in the repository's top-level folders and is installed under this namespace:
``fxmix.dsp`` (audio I/O, features, effect normalization, streaming statistics),
``fxmix.model`` (networks, losses, chunked inference, export, the automix call), ``fxmix.training`` (data,
training, evaluation), ``fxmix.host_bridge`` (session engine, OSC server, Reaper projects) and
``fxmix.plugin_presets`` (factory presets and exporters); this package holds the ``fxmix`` command (``cli``,
``verbs``, ``bench``) and :func:`fxmix.automix` (``fxmix.api``).
"""

from fxmix.dsp.constants import VERSION as __version__

__all__ = ["__version__", "automix"]


def __getattr__(name: str):
    # `fxmix.automix` loads the mixing stack (torch) on first use only, so `import fxmix` and the CLI's
    # start stay light.
    if name == "automix":
        from fxmix.api import automix

        return automix
    raise AttributeError(f"module 'fxmix' has no attribute {name!r}")
