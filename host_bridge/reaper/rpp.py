"""Reaper ``.RPP`` text: tokens, quoting and the chunk tree, with line numbers kept for patching.

An RPP file is line-based text: ``<TAG args`` opens a chunk, a line holding ``>`` closes it, any other line is
a list of tokens (``KEY value ...``). Tokens are separated by whitespace and may be quoted with ``"``, ``'`` or
a backtick (no escapes; Reaper picks a quote the string does not contain). The parser keeps every line's
number so that the writer can patch the original text (add a track, re-point relative media paths) without
re-serializing chunks it does not understand (plugin state, MIDI, envelopes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fxmix.dsp.errors import AudioInputError

_QUOTES = "\"'`"


# ----------------------------------------------------------------------------------------------- parsing
@dataclass
class Line:
    """One attribute line inside a chunk: its tokens and its 0-based line number in the file."""

    tokens: list[str]
    lineno: int


@dataclass
class Chunk:
    """``<TAG args ... >``: ``children`` holds :class:`Line` and :class:`Chunk` in file order."""

    tag: str
    args: list[str]
    lineno: int
    end_lineno: int = -1
    children: list[Line | Chunk] = field(default_factory=list)

    def lines(self, key: str) -> list[Line]:
        return [c for c in self.children if isinstance(c, Line) and c.tokens and c.tokens[0] == key]

    def first(self, key: str) -> list[str] | None:
        """Arguments of the first line starting with ``key`` (without the key), or None."""
        found = self.lines(key)
        return found[0].tokens[1:] if found else None

    def chunks(self, tag: str | None = None) -> list[Chunk]:
        return [c for c in self.children if isinstance(c, Chunk) and (tag is None or c.tag == tag)]


def tokenize(line: str) -> list[str]:
    """Split one RPP line into tokens (quotes ``"``, ``'`` or backtick, no escapes)."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _QUOTES:
            end = line.find(ch, i + 1)
            if end < 0:  # unterminated: the rest of the line
                end = n
            tokens.append(line[i + 1 : end])
            i = end + 1
            continue
        j = i
        while j < n and not line[j].isspace():
            j += 1
        tokens.append(line[i:j])
        i = j
    return tokens


def quote(value: str) -> str:
    """Quote a string the way Reaper does: ``"`` unless it contains one, then ``'``, then a backtick."""
    for q in _QUOTES:
        if q not in value:
            return f"{q}{value}{q}"
    return "`" + value.replace("`", "'") + "`"


def parse_rpp_text(text: str, where: str = "project") -> Chunk:
    """Parse RPP text into its root chunk (``REAPER_PROJECT``). CRLF, LF and a UTF-8 BOM are accepted.

    Raises:
        AudioInputError: not an RPP project (no ``<REAPER_PROJECT`` first), or unbalanced chunks.
    """
    lines = text.lstrip("\ufeff").splitlines()
    stack: list[Chunk] = []
    root: Chunk | None = None
    for lineno, raw in enumerate(lines):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("<"):
            tokens = tokenize(stripped[1:])
            chunk = Chunk(tokens[0] if tokens else "", tokens[1:], lineno)
            if stack:
                stack[-1].children.append(chunk)
            elif root is None:
                root = chunk
            else:
                raise AudioInputError(f"{where}: line {lineno + 1}: text after the end of the project")
            stack.append(chunk)
        elif stripped == ">":
            if not stack:
                raise AudioInputError(f"{where}: line {lineno + 1}: '>' closes no chunk; the file is damaged")
            stack.pop().end_lineno = lineno
        elif stack:
            stack[-1].children.append(Line(tokenize(stripped), lineno))
    if root is None or root.tag != "REAPER_PROJECT":
        raise AudioInputError(f"{where}: not a Reaper project (no '<REAPER_PROJECT' chunk); give a .RPP file")
    if stack:
        raise AudioInputError(
            f"{where}: chunk <{stack[-1].tag} opened at line {stack[-1].lineno + 1} is never closed; "
            "the file is truncated or damaged"
        )
    return root
