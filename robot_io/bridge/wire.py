"""The bridge's wire format: msgpack maps with numpy arrays as (dtype, shape, bytes), never pickle.

Every message is one ZeroMQ frame holding one msgpack map.

Request  ``{"v": PROTOCOL_VERSION, "type": <REQUEST_TYPES>, "session": <16 bytes>, "seq": <int>, "body": {...}}``
Reply    ``{"v": PROTOCOL_VERSION, "type": "ok" | "error", "seq": <seq of the request>, "body": {...}}``
Error    body ``{"code": <ErrorCode>, "message": <str>}``

An array is the map ``{"__nd__": <numpy dtype str>, "shape": [...], "data": <bytes>}`` restricted to plain numeric
dtypes; a JPEG image is ``{"__jpeg__": <bytes>, "shape": [h, w, 3]}``. ``seq`` increases per client session and
is what makes retries safe: the server applies each sequence number at most once (see ``server.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgpack
import numpy as np

from robot_io.spec import Observation

PROTOCOL_VERSION = 1
SESSION_ID_BYTES = 16

HELLO = "hello"
START_EPISODE = "start_episode"
GET_OBSERVATION = "get_observation"
SEND_ACTION = "send_action"
HOLD_ACTION = "hold_action"
END_EPISODE = "end_episode"
TELEOP_GET_ACTION = "teleop_get_action"
BYE = "bye"
REQUEST_TYPES = frozenset(
    {HELLO, START_EPISODE, GET_OBSERVATION, SEND_ACTION, HOLD_ACTION, END_EPISODE, TELEOP_GET_ACTION, BYE}
)
REPLY_OK = "ok"
REPLY_ERROR = "error"

# Numeric kinds only: bool, signed/unsigned int, float. Object, string and void dtypes never cross the wire.
_ALLOWED_DTYPE_KINDS = frozenset("biuf")
_ND_KEY = "__nd__"
_JPEG_KEY = "__jpeg__"


class ErrorCode(StrEnum):
    MALFORMED = "malformed"
    VERSION = "version"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_SESSION = "unknown_session"
    SUPERSEDED = "superseded"
    STALE_SEQ = "stale_seq"
    STALE_COMMAND = "stale_command"
    NO_EPISODE = "no_episode"
    NO_TELEOP = "no_teleop"
    ACTION_ERROR = "action_error"
    ROBOT_ERROR = "robot_error"
    INTERNAL = "internal"


class WireError(ValueError):
    """A message that does not follow the protocol; ``seq`` is the request's when it could be read, else -1."""

    def __init__(self, code: ErrorCode, message: str, seq: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.seq = seq


@dataclass(frozen=True)
class Request:
    type: str
    session: bytes
    seq: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    seq: int
    ok: bool
    body: dict[str, Any]

    @property
    def error_code(self) -> str:
        return "" if self.ok else str(self.body.get("code", ""))

    @property
    def error_message(self) -> str:
        return "" if self.ok else str(self.body.get("message", ""))


# -- encoding ---------------------------------------------------------------------------------------------------
def _encode_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ALLOWED_DTYPE_KINDS:
            raise TypeError(f"arrays of dtype {value.dtype} cannot cross the bridge (numeric dtypes only)")
        contiguous = np.ascontiguousarray(value)
        # A memoryview is packed as msgpack bin without the extra copy that tobytes() would make.
        return {
            _ND_KEY: contiguous.dtype.str,
            "shape": list(contiguous.shape),
            "data": memoryview(contiguous),
        }
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot put {type(value).__name__} on the bridge wire")


def _decode_hook(obj: dict) -> Any:
    if _ND_KEY in obj:
        return _decode_array(obj)
    if _JPEG_KEY in obj:
        return _decode_jpeg(obj)
    return obj


def _decode_array(obj: dict) -> np.ndarray:
    try:
        dtype = np.dtype(obj[_ND_KEY])
        shape = tuple(int(n) for n in obj["shape"])
        data = obj["data"]
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(ErrorCode.MALFORMED, f"bad array header: {exc}") from exc
    if dtype.kind not in _ALLOWED_DTYPE_KINDS or not isinstance(data, bytes) or any(n < 0 for n in shape):
        raise WireError(ErrorCode.MALFORMED, f"bad array: dtype {dtype}, shape {shape}")
    if len(data) != dtype.itemsize * math.prod(shape):
        raise WireError(ErrorCode.MALFORMED, f"array data is {len(data)} bytes, not {dtype} x {shape}")
    # Copy so that receivers get an ordinary writable array, not a read-only view of the message.
    return np.ndarray(shape, dtype=dtype, buffer=data).copy()


def encode_jpeg(image: np.ndarray, quality: int) -> dict:
    import cv2

    # OpenCV's codec expects BGR; converting keeps JPEG's chroma subsampling on the right channels.
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return {_JPEG_KEY: buffer.tobytes(), "shape": list(image.shape)}


def _decode_jpeg(obj: dict) -> np.ndarray:
    import cv2

    data, shape = obj.get(_JPEG_KEY), obj.get("shape")
    if not isinstance(data, bytes) or not isinstance(shape, list):
        raise WireError(ErrorCode.MALFORMED, "bad JPEG image entry")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or list(bgr.shape) != shape:
        raise WireError(ErrorCode.MALFORMED, f"JPEG image does not decode to shape {shape}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def pack(message: Mapping[str, Any]) -> bytes:
    return msgpack.packb(message, default=_encode_default, use_bin_type=True)


def unpack(data: bytes | memoryview) -> dict[str, Any]:
    """Decode one frame into a map, raising WireError for anything that is not a well-formed msgpack map."""
    try:
        message = msgpack.unpackb(data, object_hook=_decode_hook, raw=False, strict_map_key=True)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types for garbage; all mean "malformed"
        raise WireError(ErrorCode.MALFORMED, f"not a msgpack message: {type(exc).__name__}: {exc}") from exc
    if not isinstance(message, dict):
        raise WireError(ErrorCode.MALFORMED, f"message must be a map, got {type(message).__name__}")
    return message


# -- envelopes --------------------------------------------------------------------------------------------------
def pack_request(msg_type: str, session: bytes, seq: int, body: Mapping[str, Any] | None = None) -> bytes:
    return pack({"v": PROTOCOL_VERSION, "type": msg_type, "session": session, "seq": seq, "body": body or {}})


def parse_request(data: bytes) -> Request:
    message = unpack(data)
    seq = message.get("seq")
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else -1
    if message.get("v") != PROTOCOL_VERSION:
        raise WireError(
            ErrorCode.VERSION,
            f"protocol version {message.get('v')!r} is not supported (server speaks {PROTOCOL_VERSION})",
            seq,
        )
    msg_type, session, body = message.get("type"), message.get("session"), message.get("body")
    if seq < 0:
        raise WireError(ErrorCode.MALFORMED, "request needs a non-negative integer 'seq'")
    if not isinstance(session, bytes) or len(session) != SESSION_ID_BYTES:
        raise WireError(ErrorCode.MALFORMED, f"request needs a {SESSION_ID_BYTES}-byte 'session'", seq)
    if not isinstance(body, dict):
        raise WireError(ErrorCode.MALFORMED, "request 'body' must be a map", seq)
    if msg_type not in REQUEST_TYPES:
        raise WireError(ErrorCode.UNKNOWN_TYPE, f"unknown request type {msg_type!r}", seq)
    return Request(type=msg_type, session=session, seq=seq, body=body)


def pack_reply(seq: int, body: Mapping[str, Any] | None = None) -> bytes:
    return pack({"v": PROTOCOL_VERSION, "type": REPLY_OK, "seq": seq, "body": body or {}})


def pack_error(seq: int, code: ErrorCode, message: str) -> bytes:
    return pack(
        {"v": PROTOCOL_VERSION, "type": REPLY_ERROR, "seq": seq, "body": {"code": code, "message": message}}
    )


def parse_reply(data: bytes | memoryview) -> Reply:
    message = unpack(data)
    seq, kind, body = message.get("seq"), message.get("type"), message.get("body")
    if message.get("v") != PROTOCOL_VERSION:
        raise WireError(
            ErrorCode.VERSION, f"server speaks protocol {message.get('v')!r}, not {PROTOCOL_VERSION}"
        )
    if not isinstance(seq, int) or kind not in (REPLY_OK, REPLY_ERROR) or not isinstance(body, dict):
        raise WireError(
            ErrorCode.MALFORMED, "reply needs an integer 'seq', a 'type' of ok/error and a 'body' map"
        )
    return Reply(seq=seq, ok=kind == REPLY_OK, body=body)


# -- payloads ---------------------------------------------------------------------------------------------------
def encode_observation(obs: Observation, jpeg_quality: int | None) -> dict[str, Any]:
    """The wire form of an observation; ``jpeg_quality`` None sends images losslessly."""
    if jpeg_quality is None:
        images: dict[str, Any] = dict(obs.images)
    else:
        images = {
            name: encode_jpeg(np.ascontiguousarray(img), jpeg_quality) for name, img in obs.images.items()
        }
    return {"images": images, "state": obs.state, "timestamp": float(obs.timestamp), "info": dict(obs.info)}


def decode_observation(payload: Any) -> Observation:
    if not isinstance(payload, dict):
        raise WireError(ErrorCode.MALFORMED, "observation must be a map")
    images, state, info = payload.get("images"), payload.get("state"), payload.get("info", {})
    if not isinstance(images, dict) or not all(isinstance(v, np.ndarray) for v in images.values()):
        raise WireError(ErrorCode.MALFORMED, "observation 'images' must map camera names to arrays")
    timestamp = payload.get("timestamp")
    if (
        not isinstance(state, np.ndarray)
        or not isinstance(info, dict)
        or not isinstance(timestamp, int | float)
    ):
        raise WireError(
            ErrorCode.MALFORMED, "observation needs an array 'state', a number 'timestamp', a map 'info'"
        )
    return Observation(images=images, state=state, timestamp=float(timestamp), info=info)


def decode_action(value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise WireError(ErrorCode.MALFORMED, f"action must be an array, got {type(value).__name__}")
    return value
