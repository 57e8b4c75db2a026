"""Track name -> stem class: configurable regular-expression rules, folder inheritance, ``--map`` overrides.

Used by the Reaper renderer (``fxmix reaper``) and by the OSC bridge to guess a track's class from its name.
The default rules ship as ``track_classes.toml`` next to this module; a user file with the same layout can
replace them (``--rules FILE``).

Resolution order for one track: an explicit override (``--map "TRACK NAME=CLASS"``), then the first rule
whose pattern matches the track's own name, then the class of the nearest folder parent that has one, then
the rules' ``default_class``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

#: The rules shipped with fxmix.
DEFAULT_RULES_PATH = Path(__file__).with_name("track_classes.toml")

_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_])(?=\d)")


@dataclass(frozen=True)
class ClassRule:
    """One rule: any of ``patterns`` (case-insensitive ``re.search``) matching a name gives ``class_name``."""

    class_name: str
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        compiled = []
        for pattern in self.patterns:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise ConfigError(
                    f"track class rule {self.class_name!r}: bad regular expression {pattern!r} ({exc}); "
                    "fix the pattern (TOML literal strings '...' keep backslashes as written)"
                ) from exc
        object.__setattr__(self, "_compiled", tuple(compiled))

    def matches(self, normalized_name: str) -> bool:
        return any(p.search(normalized_name) for p in self._compiled)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ClassRules:
    """An ordered list of rules plus the class list and the fallback class.

    Attributes:
        rules: tried in order, the first match wins.
        classes: every class a rule, override or default may name.
        default_class: class of a track that nothing matches (and no folder parent gives one).
        source: where the rules came from (file path), for messages.
    """

    rules: tuple[ClassRule, ...]
    classes: tuple[str, ...]
    default_class: str
    source: str = "<built-in>"

    def __post_init__(self) -> None:
        if not self.classes:
            raise ConfigError(
                f"{self.source}: 'classes' is empty; list the stem classes, e.g. ['vocals', 'other']"
            )
        if self.default_class not in self.classes:
            raise ConfigError(
                f"{self.source}: default_class {self.default_class!r} is not one of classes {list(self.classes)}"
            )
        for rule in self.rules:
            if rule.class_name not in self.classes:
                raise ConfigError(
                    f"{self.source}: rule class {rule.class_name!r} is not one of classes {list(self.classes)}; "
                    "add it to 'classes' or fix the rule"
                )

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> ClassRules:
        """Load rules from a TOML file (layout: see the shipped ``track_classes.toml``).

        Raises:
            ConfigError: missing file, TOML syntax error, missing/ill-typed keys, bad regex, unknown class.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: track class rules file not found; check the --rules path") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "<dict>") -> ClassRules:
        unknown = set(data) - {"classes", "default_class", "rules"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown keys {sorted(unknown)}; allowed: classes, default_class, rules"
            )
        classes = data.get("classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"{source}: 'classes' must be a list of strings, e.g. ['vocals', 'drums']")
        default_class = data.get("default_class", classes[-1] if classes else "")
        if not isinstance(default_class, str):
            raise ConfigError(f"{source}: 'default_class' must be a string")
        rules = []
        for i, entry in enumerate(data.get("rules", [])):
            if not isinstance(entry, Mapping) or set(entry) != {"class", "patterns"}:
                raise ConfigError(f"{source}: rules[{i}] must have exactly the keys 'class' and 'patterns'")
            patterns = entry["patterns"]
            if not isinstance(entry["class"], str) or not isinstance(patterns, list):
                raise ConfigError(f"{source}: rules[{i}]: 'class' is a string, 'patterns' a list of strings")
            if not all(isinstance(p, str) for p in patterns):
                raise ConfigError(f"{source}: rules[{i}].patterns must all be strings")
            rules.append(ClassRule(entry["class"], tuple(patterns)))
        return cls(tuple(rules), tuple(classes), default_class, source)


_DEFAULT: ClassRules | None = None


def load_rules(path: str | os.PathLike | None = None) -> ClassRules:
    """The rules in ``path``, or the shipped default rules (cached) when ``path`` is None."""
    global _DEFAULT
    if path is not None:
        return ClassRules.from_toml(path)
    if _DEFAULT is None:
        _DEFAULT = ClassRules.from_toml(DEFAULT_RULES_PATH)
    return _DEFAULT


def normalize_track_name(name: str) -> str:
    """The form rules are matched against: ``_`` and ``.`` -> space, a space between digits and letters."""
    return _DIGIT_LETTER.sub(" ", re.sub(r"[_.]+", " ", name)).strip()


def match_track_name(name: str, rules: ClassRules | None = None) -> str | None:
    """Class of the first rule matching ``name``, or None when no rule matches."""
    rules = load_rules() if rules is None else rules
    normalized = normalize_track_name(name)
    for rule in rules.rules:
        if rule.matches(normalized):
            return rule.class_name
    return None


def classify_track_name(name: str, rules: ClassRules | None = None) -> str:
    """Guess a track's class from its name alone (no folder context): first matching rule, else the default.

    Args:
        name: the track name as the DAW shows it (any Unicode).
        rules: rules to use; None loads the shipped defaults.

    Returns:
        One of ``rules.classes``.
    """
    rules = load_rules() if rules is None else rules
    found = match_track_name(name, rules)
    return rules.default_class if found is None else found


def parse_map_overrides(items: Sequence[str], rules: ClassRules | None = None) -> dict[str, str]:
    """Parse ``--map "TRACK NAME=CLASS"`` values (split at the last ``=``) into {track name: class}.

    Raises:
        ConfigError: an item without ``=``, an empty name, or a class the rules do not know.
    """
    rules = load_rules() if rules is None else rules
    out: dict[str, str] = {}
    for item in items:
        name, sep, class_name = item.rpartition("=")
        name, class_name = name.strip(), class_name.strip()
        if not sep or not name:
            raise ConfigError(f"--map {item!r}: expected 'TRACK NAME=CLASS', e.g. --map 'Lead Vox=vocals'")
        if class_name not in rules.classes:
            raise ConfigError(
                f"--map {item!r}: unknown class {class_name!r}; use one of {list(rules.classes)}"
            )
        out[name] = class_name
    return out


def assign_classes(
    names: Sequence[str],
    parents: Sequence[int | None],
    rules: ClassRules | None = None,
    overrides: Mapping[str, str] | None = None,
) -> list[str]:
    """Classes for a list of tracks with folder structure.

    Args:
        names: track names in project order.
        parents: for each track, the index of its folder parent (always earlier in the list) or None.
        rules: rules to use; None loads the shipped defaults.
        overrides: {track name: class}; names match exactly, else case-insensitively. Every override must
            name an existing track.

    Returns:
        One class per track.

    Raises:
        ConfigError: an override names no track, or a class the rules do not know.
    """
    rules = load_rules() if rules is None else rules
    overrides = dict(overrides or {})
    exact = set(names)
    folded = {n.casefold(): n for n in names}
    by_name: dict[str, str] = {}
    for key, class_name in overrides.items():
        if class_name not in rules.classes:
            raise ConfigError(
                f"--map {key!r}: unknown class {class_name!r}; use one of {list(rules.classes)}"
            )
        target = key if key in exact else folded.get(key.casefold())
        if target is None:
            raise ConfigError(
                f"--map {key!r}: no track has that name; tracks are: {', '.join(map(repr, names))}"
            )
        by_name[target] = class_name
    explicit: list[str | None] = []
    out: list[str] = []
    for i, name in enumerate(names):
        own = by_name.get(name)
        if own is None:
            own = match_track_name(name, rules)
        explicit.append(own)
        if own is None:
            parent = parents[i]
            while parent is not None and explicit[parent] is None:
                parent = parents[parent]
            own = rules.default_class if parent is None else explicit[parent]
        out.append(own)
    return out
