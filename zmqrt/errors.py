"""Task outcome vocabulary shared by the server, the backends, the wire protocol and the client.

A task ends in exactly one result whose ``status`` is one of :class:`Status` and whose ``code`` is one of
:class:`Code`. Anything that refuses a task raises :class:`TaskError`; the server turns it into that result.
The string values are the wire values (see ``ingest/PROTOCOL.md``): never rename them.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    OK = "ok"
    ERROR = "error"  # the task was accepted but failed while running (GPU fault, internal error)
    REJECTED = "rejected"  # refused before running: bad input, infeasible deadline, full queue, shutdown
    EXPIRED = "expired"  # accepted, but already late at dispatch: not run


class Code(str, Enum):
    OK = "OK"
    MALFORMED = "MALFORMED"  # a field is missing or of the wrong type
    UNKNOWN_KERNEL = "UNKNOWN_KERNEL"
    BAD_DTYPE = "BAD_DTYPE"
    BAD_SHAPE = "BAD_SHAPE"  # shape rule broken, or shape x itemsize != len(data)
    BAD_ARITY = "BAD_ARITY"  # wrong number of inputs
    BAD_PARAM = "BAD_PARAM"  # unknown, missing or wrongly typed kernel parameter
    BAD_PRIORITY = "BAD_PRIORITY"
    BAD_DEADLINE = "BAD_DEADLINE"  # negative or non-finite deadline / period
    TOO_LARGE = "TOO_LARGE"  # inputs or outputs exceed the configured maximum task size
    BAD_REPLY_TO = "BAD_REPLY_TO"  # reply endpoint not allowed
    DEADLINE_INFEASIBLE = "DEADLINE_INFEASIBLE"
    QUEUE_FULL = "QUEUE_FULL"
    DUPLICATE = "DUPLICATE"
    SHUTDOWN = "SHUTDOWN"
    EXPIRED = "EXPIRED"
    GPU_FAULT = "GPU_FAULT"
    INTERNAL = "INTERNAL"


# Codes that mean "refused before running"; everything else that is not OK/EXPIRED is an error.
_REJECT_CODES = frozenset(
    {
        Code.MALFORMED,
        Code.UNKNOWN_KERNEL,
        Code.BAD_DTYPE,
        Code.BAD_SHAPE,
        Code.BAD_ARITY,
        Code.BAD_PARAM,
        Code.BAD_PRIORITY,
        Code.BAD_DEADLINE,
        Code.TOO_LARGE,
        Code.BAD_REPLY_TO,
        Code.DEADLINE_INFEASIBLE,
        Code.QUEUE_FULL,
        Code.DUPLICATE,
        Code.SHUTDOWN,
    }
)


def status_for(code: Code) -> Status:
    """The status a result carries for ``code``."""
    if code is Code.OK:
        return Status.OK
    if code is Code.EXPIRED:
        return Status.EXPIRED
    return Status.REJECTED if code in _REJECT_CODES else Status.ERROR


class TaskError(Exception):
    """A task cannot be run as given. ``code`` goes on the wire; ``message`` is for a person."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> Status:
        return status_for(self.code)
