"""Blynk's hardware protocol framing: constants, an incremental decoder and frame builders.

Pure and I/O-free. A frame is a 5-byte big-endian header `command:u8, msg_id:u16, length:u16`
followed by `length` bytes of body whose fields are separated by `\\0`. A RESPONSE (command 0)
has no body: its length field carries a status code.

Decoding choices where the protocol is silent:
- `msg_id` 0 and a body longer than the decoder's limit are errors (`CodecError`); the limit is
  checked on the header, so an oversized frame is refused before its body arrives.
- Unknown command codes decode like any other command (header plus body): framing does not depend
  on the command, and what to do with an unknown command is the server's choice.
- blynklib 0.2.x answers a PING with a RESPONSE that carries the status as a 3-byte text body
  (length field 3, body `200`). Such a frame is read as status 200 with its body consumed; any
  other RESPONSE has no body.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable
from typing import NamedTuple

# commands
RESPONSE = 0
LOGIN = 2
PING = 6
TWEET = 12
EMAIL = 13
NOTIFY = 14
BRIDGE = 15
HARDWARE_SYNC = 16
INTERNAL = 17
PROPERTY = 19
HARDWARE = 20
GROUP = 21
HW_LOGIN = 29
REDIRECT = 41
EVENT_LOG = 64
EVENT_CLEAR = 65

# statuses carried by RESPONSE
OK = 200
QUOTA_LIMIT = 1
ILLEGAL_COMMAND = 2
NOT_REGISTERED = 3
ALREADY_REGISTERED = 4
NOT_AUTHENTICATED = 5
NOT_ALLOWED = 6
INVALID_TOKEN = 9
ILLEGAL_COMMAND_BODY = 11
NO_DATA = 17
SERVER_EXCEPTION = 19

HEADER = struct.Struct("!BHH")
HEADER_SIZE = HEADER.size
MAX_MSG_ID = 0xFFFF
MAX_BODY = 0xFFFF
"""The largest body the length field can describe."""
DEFAULT_BUFFER = 1024
"""The receive buffer a device has until it announces its own (`buff-in`)."""

_QUIRK_BODY = b"200"


class CodecError(ValueError):
    """The bytes are not a valid frame; the connection cannot continue."""


class Frame(NamedTuple):
    command: int
    msg_id: int
    body: bytes
    status: int = 0
    """A RESPONSE's status (its length field); 0 for other commands."""

    def fields(self) -> list[bytes]:
        """The body split at `\\0` (an empty body has no fields)."""
        return self.body.split(b"\0") if self.body else []


class FrameDecoder:
    """Feed bytes as they arrive; get the frames completed so far, as many at a time as asked."""

    __slots__ = ("_buffer", "max_body", "more")

    def __init__(self, max_body: int = DEFAULT_BUFFER) -> None:
        self.max_body = max_body
        self._buffer = bytearray()
        self.more = False
        """The last `feed` stopped at its limits with bytes left: `feed(b"")` may decode more."""

    @property
    def pending(self) -> int:
        """Bytes received that are not yet decoded."""
        return len(self._buffer)

    def feed(
        self, data: bytes, max_frames: int = sys.maxsize, max_bytes: int = sys.maxsize
    ) -> list[Frame]:
        """Decode `data` after what was fed before; raise CodecError on malformed input.

        Decoding stops after `max_frames` frames, or at the first frame that starts once the
        frames decoded span `max_bytes` bytes; what follows stays buffered, undecoded, for the
        next call (`feed(b"")` goes on) and `more` is set."""
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            view = data
        frames: list[Frame] = []
        unpack = HEADER.unpack_from
        end = len(view)
        pos = 0
        limit = self.max_body
        more = False
        while end - pos >= HEADER_SIZE:
            if len(frames) >= max_frames or pos >= max_bytes:
                more = True
                break
            command, msg_id, length = unpack(view, pos)
            if msg_id == 0:
                raise CodecError("message id 0")
            if command == RESPONSE:
                if length == len(_QUIRK_BODY):
                    if end - pos < HEADER_SIZE + 3:
                        break
                    start = pos + HEADER_SIZE
                    if view[start : start + 3] == _QUIRK_BODY:
                        frames.append(Frame(RESPONSE, msg_id, b"", OK))
                        pos = start + 3
                        continue
                frames.append(Frame(RESPONSE, msg_id, b"", length))
                pos += HEADER_SIZE
                continue
            if length > limit:
                raise CodecError(f"body of {length} bytes exceeds the limit of {limit}")
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            frames.append(Frame(command, msg_id, bytes(view[pos + HEADER_SIZE : stop])))
            pos = stop
        self.more = more
        if pos == end:
            buffer.clear()
        elif buffer:
            del buffer[:pos]
        else:
            buffer += view[pos:]
        return frames


class MessageIds:
    """Message ids for frames a server starts: 1..65535, then 1 again; never 0."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = self._last % MAX_MSG_ID + 1
        return self._last


def response(msg_id: int, status: int) -> bytes:
    """A RESPONSE frame: the status travels in the length field, no body."""
    return HEADER.pack(RESPONSE, msg_id, status)


def message(command: int, msg_id: int, fields: Iterable[str | bytes] = ()) -> bytes:
    """A frame whose body is `fields` joined with `\\0` (text is UTF-8 encoded)."""
    body = b"\0".join(f if isinstance(f, bytes) else f.encode() for f in fields)
    if len(body) > MAX_BODY:
        raise CodecError(f"body of {len(body)} bytes does not fit a frame")
    return HEADER.pack(command, msg_id, len(body)) + body


def ping(msg_id: int) -> bytes:
    return HEADER.pack(PING, msg_id, 0)


def hardware_write(msg_id: int, pin: str, values: Iterable[str]) -> bytes:
    """HARDWARE `vw\\0<pin>\\0<value>[\\0<value>...]`; `pin` as the device names it (`2`)."""
    return message(HARDWARE, msg_id, ("vw", pin, *values))


def bare_pin(pin: str) -> str:
    """The pin as it travels to a device: `v2` -> `2`."""
    return pin[1:] if pin[:1] in ("v", "V") else pin


def key_values(fields: list[bytes]) -> dict[str, str]:
    """INTERNAL info (`key\\0value\\0key\\0value...`) as a dict; undecodable text is replaced."""
    texts = [f.decode("utf-8", "replace") for f in fields]
    return {texts[i]: texts[i + 1] for i in range(0, len(texts) - 1, 2) if texts[i]}
