"""What the store hands out and takes in: a lease, a claimed saga, the attempt rows."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sagas.engine.outcomes import CallResult
from sagas.engine.transitions import Call, SagaState


class LeaseLost(Exception):
    """The saga's lease token changed: another worker owns it now."""


class CancelRequested(Exception):
    """A cancel arrived since the claim: nothing was written; decide again with it."""


@dataclass
class Lease:
    saga_id: uuid.UUID
    token: uuid.UUID
    owner: str
    definition: str
    created_at: datetime
    lost: bool = False  # set by the lease keeper when a renewal found another token
    # The X-Request-ID of the saga's start: on every call and every SAGA log line.
    request_id: str = ""


@dataclass
class Claimed:
    lease: Lease
    state: SagaState
    saga_input: dict
    definition_id: int


@dataclass(frozen=True)
class AttemptOpen:
    call: Call
    step: str
    method: str
    url: str
    started_at: datetime


@dataclass(frozen=True)
class AttemptClose:
    call: Call
    step: str
    result: CallResult
