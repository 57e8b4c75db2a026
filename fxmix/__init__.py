"""fxmix: automatic music mixing backend for DAWs.

The code lives in the repository's top-level folders and is installed under this namespace:
``fxmix.dsp`` (audio I/O, features, effect normalization, streaming statistics),
``fxmix.model`` (networks, losses, chunked inference, export), ``fxmix.training`` (data, training,
evaluation), ``fxmix.host_bridge`` (session engine, OSC server, Reaper projects, CLI) and
``fxmix.plugin_presets`` (factory presets and exporters).
"""

from fxmix.dsp.constants import VERSION as __version__

__all__ = ["__version__"]
