"""Names and ids: what a workflow id, a step name, an event name and an event id may be.

Each rule is checked here, once, by the engine where it takes the name; the HTTP API, the command
line and the webhook sources pass the error on in their own terms. One limit holds for all of
them: :data:`MAX_NAME_LENGTH` characters, what the store keeps.
"""

from __future__ import annotations

import re

from dataflows.errors import InvalidStepName

#: The longest workflow id, step name, event name or event id, in characters.
MAX_NAME_LENGTH = 200

#: Unicode's control characters (category Cc): exactly these 65 code points.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

#: Event names under this prefix are the engine's own: they never trigger workflows, and only the
#: engine sends them (a forged ``dataflows/run.finished`` would resolve an invoke).
INTERNAL_PREFIX = "dataflows/"


def check_workflow_id(workflow_id: object) -> str:
    if not isinstance(workflow_id, str) or not 0 < len(workflow_id) <= MAX_NAME_LENGTH:
        raise ValueError(f"invalid workflow id {workflow_id!r}")
    return workflow_id


def check_step_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidStepName(f"a step name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidStepName(
            f"step name is {len(name)} characters; the limit is {MAX_NAME_LENGTH}"
        )
    if _CONTROL.search(name):
        raise InvalidStepName(f"step name {name!r} contains control characters")
    return name


def is_event_name(name: object) -> bool:
    """Whether ``name`` can name an event: printable, 1 to :data:`MAX_NAME_LENGTH` characters."""
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH and name.isprintable()


def check_event_name(name: object) -> str:
    """A name to wait for (:func:`is_event_name`)."""
    if not is_event_name(name):
        raise ValueError(
            f"invalid event name {name!r}: a printable string of 1 to {MAX_NAME_LENGTH} characters"
        )
    assert isinstance(name, str)
    return name


def check_sent_event_name(name: object) -> str:
    """A name to send an event under: :func:`check_event_name`, outside :data:`INTERNAL_PREFIX`."""
    checked = check_event_name(name)
    if checked.startswith(INTERNAL_PREFIX):
        raise ValueError(f"event names starting with {INTERNAL_PREFIX!r} are reserved")
    return checked


def check_event_id(event_id: object) -> str:
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_NAME_LENGTH:
        raise ValueError(
            f"invalid event id {event_id!r}: a string of 1 to {MAX_NAME_LENGTH} characters"
        )
    return event_id
