"""Reaper ``.RPP`` projects: reader (:mod:`.project`), timeline renderer (:mod:`.render`), write-back of an
automixed copy (:mod:`.write`) and the texts shown to a person (:mod:`.report`). The RPP text itself is in
:mod:`.rpp`."""

from .project import FxSlot, Item, Project, Track, audible_tracks, check_media, media_info, read_project
from .render import balance_gains, render_buses, render_track, render_tracks, track_gains
from .rpp import Chunk, parse_rpp_text, quote, tokenize
from .write import (
    FXMIX_TRACK_NAME,
    TrackSettings,
    suggest_track_settings,
    volpan_from_gains,
    write_project_copy,
)

__all__ = [
    "FXMIX_TRACK_NAME",
    "Chunk",
    "FxSlot",
    "Item",
    "Project",
    "Track",
    "TrackSettings",
    "audible_tracks",
    "balance_gains",
    "check_media",
    "media_info",
    "parse_rpp_text",
    "quote",
    "read_project",
    "render_buses",
    "render_track",
    "render_tracks",
    "suggest_track_settings",
    "tokenize",
    "track_gains",
    "volpan_from_gains",
    "write_project_copy",
]
