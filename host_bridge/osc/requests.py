"""What the receive thread hands to the worker: one small typed request per kind of work, and the slot (the
receive side's view) of an open session. The worker runs each request type with exactly one handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .assembler import BlockAssembler

Address = tuple[str, int]


@dataclass(frozen=True)
class SlotConfig:
    """What the receive thread knows about an open session (to validate blocks without the engine)."""

    sample_rate: int
    block_samples: int
    n_tracks: int
    #: the session's block assembler (receive side; one per opening, shared with the worker's session state)
    assembler: BlockAssembler = field(compare=False, repr=False)
    #: the address that opened the session: only it may use the session (unless the server shares control)
    owner: Address | None = None


@dataclass(slots=True, frozen=True)
class OpenRequest:
    """Open (or re-open) ``session`` with ``slot``'s configuration; replies go to ``sender`` by default."""

    kind: ClassVar[str] = "open"
    sender: Address
    session: int
    slot: SlotConfig


@dataclass(slots=True, frozen=True)
class CloseRequest:
    kind: ClassVar[str] = "close"
    session: int


@dataclass(slots=True, frozen=True)
class TrackRequest:
    """Assign a track a class and display name (None: guess the class / keep the name)."""

    kind: ClassVar[str] = "track"
    sender: Address
    session: int
    track: int
    class_name: str | None
    name: str | None


@dataclass(slots=True)
class MixRequest:
    """One complete multitrack block, queued when its last track came in (or the reorder wait ended).

    Not frozen: one is built per block on the receive thread, and a frozen dataclass costs three times as
    much to build; nothing changes it after it is queued.
    """

    kind: ClassVar[str] = "mix"
    session: int
    #: the opening the block was assembled for (a re-opened session number has a new slot)
    slot: SlotConfig
    seq: int
    blocks: np.ndarray  # (n_tracks, 2, block_samples) float32
    #: ``time.monotonic()`` when the block was complete (for the backlog check)
    t_ready: float


@dataclass(slots=True, frozen=True)
class ControlRequest:
    kind: ClassVar[str] = "control"
    sender: Address
    session: int
    name: str
    value: float


@dataclass(slots=True, frozen=True)
class ProfileRequest:
    kind: ClassVar[str] = "profile"
    sender: Address
    session: int
    profile: str


@dataclass(slots=True, frozen=True)
class ResetRequest:
    kind: ClassVar[str] = "reset"
    session: int


@dataclass(slots=True, frozen=True)
class ReplyToRequest:
    """Send the session's mixes and parameters to ``to`` from now on."""

    kind: ClassVar[str] = "reply"
    session: int
    to: Address


@dataclass(slots=True, frozen=True)
class LatencyQuery:
    kind: ClassVar[str] = "query_latency"
    sender: Address
    session: int
    #: most bytes a reply to this sender may have (None: no cap; see ``BridgeCore.reply_limit``)
    limit: int | None = None


@dataclass(slots=True, frozen=True)
class StateQuery:
    kind: ClassVar[str] = "query_state"
    sender: Address
    session: int
    #: most bytes a reply to this sender may have (None: no cap; see ``BridgeCore.reply_limit``)
    limit: int | None = None


@dataclass(slots=True, frozen=True)
class StatsQuery:
    """Counters of the server, and of ``session`` unless it is -1."""

    kind: ClassVar[str] = "query_stats"
    sender: Address
    session: int
    limit: int | None = None


@dataclass(slots=True, frozen=True)
class ParamsQuery:
    kind: ClassVar[str] = "query_params"
    sender: Address
    session: int
    #: most bytes a reply to this sender may have (None: no cap; see ``BridgeCore.reply_limit``)
    limit: int | None = None


@dataclass(slots=True, frozen=True)
class BuiltRequest:
    """An engine session built off the worker (the opener thread), for an opening or a profile switch."""

    kind: ClassVar[str] = "built"
    session: int
    slot: SlotConfig
    #: the opening or profile switch this answers (a newer one makes it stale: the engine is closed)
    token: object
    sender: Address
    profile: str | None
    engine: Any = None
    #: why the build failed (None: ``engine`` is ready)
    error: str | None = None


@dataclass(slots=True, frozen=True)
class WakeRequest:
    """Wakes the worker so it picks up a built session at once."""

    kind: ClassVar[str] = "wake"


Request = (
    OpenRequest
    | CloseRequest
    | TrackRequest
    | MixRequest
    | ControlRequest
    | ProfileRequest
    | ResetRequest
    | ReplyToRequest
    | LatencyQuery
    | StateQuery
    | StatsQuery
    | ParamsQuery
    | BuiltRequest
    | WakeRequest
)
