"""Name -> network architecture table, and building networks and their configs by architecture name.

A weights file's JSON sidecar and a network TOML name their architecture (``"paper"``, ``"wave_unet"``,
``"causal"``); :data:`ARCHS` maps that name to the class (no pickles, no code runs on load). Each class
carries ``config_class``, the dataclass of :mod:`fxmix.model.config` its constructor takes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from fxmix.dsp.errors import ConfigError, ModelLoadError

from .causal import CausalMixer
from .config import NetConfig, named_config_path
from .mixer import ConsoleMixer
from .nets import PaperNet, WaveUNet

#: architecture name (sidecar / TOML ``arch``) -> network class
ARCHS: dict[str, type] = {
    "paper": PaperNet,
    "wave_unet": WaveUNet,
    "causal": CausalMixer,
    "console": ConsoleMixer,
}


def get_arch(name: str) -> type:
    """The network class registered under ``name``.

    Raises:
        ModelLoadError: no architecture of that name.
    """
    if name not in ARCHS:
        raise ModelLoadError(f"unknown network architecture {name!r}; known: {sorted(ARCHS)}")
    return ARCHS[name]


def arch_name(model) -> str:
    """The registered name of ``model``'s class.

    Raises:
        ConfigError: the class is not in :data:`ARCHS`.
    """
    for name, cls in ARCHS.items():
        if type(model) is cls:
            return name
    raise ConfigError(
        f"{type(model).__name__} is not a registered network; add it to fxmix.model.registry.ARCHS"
    )


def net_config_from_dict(arch: str, data: dict[str, Any], where: str = "config") -> NetConfig:
    """Config object for a registered ``arch`` from a plain dict (e.g. a JSON sidecar or a TOML table)."""
    return get_arch(arch).config_class.from_dict(dict(data) if isinstance(data, dict) else data, where=where)


def load_net_config(name_or_path: str | Path) -> tuple[str, NetConfig]:
    """Read a network TOML (``arch = ...`` + ``[net]`` table). Returns ``(arch, config)``.

    Raises:
        ConfigError: unreadable TOML, missing ``arch``, unknown keys, bad values (the message names the file).
    """
    path = named_config_path(str(name_or_path))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read network config: {exc}") from None
    extra = sorted(set(data) - {"arch", "net", "name", "description"})
    if extra:
        raise ConfigError(f"{path}: unknown top-level key(s) {extra}; expected arch, net, name, description")
    arch = data.get("arch")
    if not isinstance(arch, str):
        raise ConfigError(f'{path}: missing arch = "..." (e.g. arch = "paper")')
    net = data.get("net", {})
    if not isinstance(net, dict):
        raise ConfigError(f"{path}: [net] must be a table")
    return arch, net_config_from_dict(arch, net, where=str(path))


def build_model(name_or_path: str | Path):
    """Instantiate a freshly initialised network from a named config or TOML file."""
    arch, config = load_net_config(name_or_path)
    return get_arch(arch)(config)
