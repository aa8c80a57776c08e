"""Everything ZeroMQ in zmqrt: the wire protocol, the ingest receiver, result routing and the producer clients.

The wire protocol is specified, language-neutrally, in ``ingest/PROTOCOL.md``. The server wiring lives in
``zmqrt``; this package only moves and validates bytes. ``ingest.aio`` (asyncio client) is imported on demand.
"""

from .client import Client, ClientClosed
from .protocol import (
    DEFAULT_REPLY_PATTERNS,
    WIRE_DTYPES,
    Limits,
    ProtocolError,
    Rejection,
    Result,
    Task,
    decode_result,
    decode_task,
    encode_array,
    encode_result,
    encode_task,
    endpoint_allowed,
)
from .receiver import Receiver
from .results import ResultRouter

__all__ = [
    "DEFAULT_REPLY_PATTERNS",
    "WIRE_DTYPES",
    "Client",
    "ClientClosed",
    "Limits",
    "ProtocolError",
    "Receiver",
    "Rejection",
    "Result",
    "ResultRouter",
    "Task",
    "decode_result",
    "decode_task",
    "encode_array",
    "encode_result",
    "encode_task",
    "endpoint_allowed",
]
