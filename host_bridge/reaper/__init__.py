"""Reaper ``.RPP`` projects: reader (:mod:`.project`), timeline renderer (:mod:`.render`), write-back of an
automixed copy (:mod:`.write`) and the texts shown to a person (:mod:`.report`). The RPP text itself is in
:mod:`.rpp`."""

from .project import Item, Project, Track, audible_tracks, check_media, media_info, read_project
from .render import balance_gains, render_buses, render_track
from .rpp import Chunk, parse_rpp_text, quote, tokenize
from .write import FXMIX_TRACK_NAME, suggest_track_settings, write_project_copy

__all__ = [
    "FXMIX_TRACK_NAME",
    "Chunk",
    "Item",
    "Project",
    "Track",
    "audible_tracks",
    "balance_gains",
    "check_media",
    "media_info",
    "parse_rpp_text",
    "quote",
    "read_project",
    "render_buses",
    "render_track",
    "suggest_track_settings",
    "tokenize",
    "write_project_copy",
]
