"""Blynk's hardware protocol as a sans-IO state machine: bytes and time in, requests and bytes out.

`HardwareSession` is one device connection's protocol, in the manner of h11's `Connection`. It
owns no socket, loop or clock: whatever needs time takes `now` (monotonic seconds). The adapter
(`transport`) feeds it what the socket reads (`receive_data`), takes the app-layer requests the
frames become (`next_request`) and answers them (`accept_login`, `refuse`, `send_value`, ...),
writes `data_to_send(now)` whenever it has interacted with it, and keeps one timer at
`next_deadline()` that calls `on_timer(now)`. The session may decide to close (`closed`, with a
`close_reason`); the adapter then closes the socket after writing what is left.

Pins travel as the device spells them (`bytes`): resolving them against the catalog, checking
values against datastreams and storing them is the app layer's job (`DeviceSession`), so this
module imports nothing above the codec. Framing lives in `codec`.

Choices where Blynk's protocol description is silent:

Login and session
- The first frame must be LOGIN (2) or HW_LOGIN (29) whose first body field is the device token
  (request `Login`): RESPONSE 200, or RESPONSE 9 (invalid token) and the connection is closed.
  Any other first frame closes the connection. A LOGIN or HW_LOGIN after login is answered
  ALREADY_REGISTERED (4), as Blynk's server does, and the session goes on (the C++ library
  takes 4 to its login as success).
- What a stranger can make the server hold is bounded: a connection that has not logged in
  `login_timeout` seconds after it was accepted is closed, however it trickles its bytes;
  until its login is accepted it may send `login_bytes` bytes in all (the login frame and
  whatever it pipelines after it; a client library waits for the answer to its login) and
  no frame larger than that, or the default receive buffer (1024), whichever is smaller: the
  header announcing a larger one closes the connection before its body arrives.
- One session per device: a new login with the same token closes the older connection (the
  adapter's presence `Session`). Traffic marks the device seen; a device silent for 1.5 x its
  heartbeat (the `h-beat` it announced, else `Settings.heartbeat`) is disconnected, and the end
  of the connection marks it offline. Silence is counted from the last bytes received; while
  frames wait for the app layer (received but not yet handled, or being handled) the device
  is not silent: its frames wait for the server, not the other way round.

What the device sends
- HARDWARE `vw\\0<pin>\\0<value>[\\0<value>]` writes through the one write path (pin `1`, `v1`
  or `V1`). Consecutive writes become one `Write` request, so that all writes decoded in one
  turn (below) are stored in one ingest write; any other frame ends the run, so a read, sync,
  property request or PING after writes is handled once the writes are. Blynk acknowledges
  nothing on success, and neither does pinbase. A write that cannot be stored (no datastream on
  that pin, a value that does not match the datastream type, a malformed body) stores nothing
  and is answered RESPONSE ILLEGAL_COMMAND (2) with the frame's id (`refuse`): the status
  Blynk's server gives a hardware command it cannot apply, and one that every client library
  tolerates (they log responses and carry on).
- Values beyond the device's rate limit are not dropped but held: the adapter stores those
  that fit and stops reading the socket until the rest fit too (back-pressure through TCP), so
  a device sending faster than its rate is slowed down to it and the server never parses what
  it cannot store. Like Blynk's server, the device is told RESPONSE QUOTA_LIMIT (1), with the
  id of the first frame held, at most once every `QUOTA_WARN_PERIOD` seconds
  (`quota_exceeded`); the values follow as the rate allows.
- `vr\\0<pin>[\\0<pin>...]` is answered with HARDWARE `vw\\0<pin>\\0<value>` per pin that has a
  value (pins travel as bare numbers). HARDWARE_SYNC with an empty body, or just `vr`, means every
  datastream that has a value (`Read.pins` None); `vr\\0<pin>...` names pins. One HARDWARE
  message per pin, carrying the request's id. Pins without a value or datastream get nothing,
  as in Blynk.
- A location travels as two fields, `vw\\0<pin>\\0<lon>\\0<lat>`, the way devices send one.
- INTERNAL (17) `ver..h-beat..buff-in..dev..` sets the heartbeat and receive buffer and is
  answered RESPONSE 200 (the heartbeat and buffer only from ASCII digits); INTERNAL `rtc` is
  answered INTERNAL `rtc\\0<unix seconds>` as Blynk does (request `Rtc`: the wall clock is the
  adapter's). INTERNAL `utc\\0<what>` (request `Utc`) is answered INTERNAL
  `utc\\0<what>\\0<value>...` with the request's id, what the C++ library hands to
  `BLYNK_WRITE(InternalPinUTC)` (`domain.utc` says which requests and values); a `utc` without
  exactly one request name of letters and `_`, or a name the server does not know, is answered
  ILLEGAL_COMMAND_BODY (11).
- INTERNAL `meta\\0get\\0<name>` (request `Meta`) is answered INTERNAL `meta\\0<name>\\0<value>`
  with the request's id (what `BLYNK_WRITE(InternalPinMETA)` receives; an empty value when the
  metafield has none); `meta\\0set\\0<name>\\0<value>` is answered RESPONSE 200 once stored,
  ILLEGAL_COMMAND_BODY for an unknown name or a value the metafield refuses (charged as one
  value). Any other shape of `meta` is answered ILLEGAL_COMMAND_BODY.
- GROUP (21), sent by `Blynk.beginGroup(ts)` and `Blynk.endGroup()`: `t\\0<epoch ms>` begins a
  group whose writes all carry that timestamp (request `Write.ts`), `b` one whose writes take
  the connection's clock, `e` ends it. A begin while a group is open replaces it; an end
  without one is ignored. A malformed GROUP (another kind, a timestamp that is not a plain
  non-negative 64-bit count of digits, extra fields) is answered ILLEGAL_COMMAND_BODY; after a
  malformed begin the group's writes are refused (ILLEGAL_COMMAND) until its end, so that no
  value is stored at a time the device did not mean. Nothing is answered on success.
- PROPERTY (19) `<pin>\\0<property>\\0<value>[\\0<value>...]` from a device sets a widget property
  (several values become a JSON array of strings, Blynk's `labels` form).
- EVENT_LOG (64) `code[\\0description]`, sent by `Blynk.logEvent`, logs an event of the
  product (request `LogEvent`); EVENT_CLEAR (65) `code` resolves the device's open warnings and
  critical events of that code (request `ResolveEvent`). Each is answered RESPONSE 200 once
  stored, QUOTA_LIMIT (1) over Blynk's event limits (every time), ILLEGAL_COMMAND_BODY (11) for
  an unknown code, a description over 300 characters, a field that is not UTF-8 or extra
  fields.
- Frames are decoded a turn at a time: at most `TURN_FRAMES` frames, none starting beyond
  `TURN_BYTES` bytes, wait to be handled; the rest of a large read stays undecoded until they
  are, and the adapter lets other connections run between turns. So one read (up to 256 KiB,
  thousands of frames) never holds the event loop for long, and a device that floods the
  server costs it one turn at a time.
- PING is answered RESPONSE 200. Any other command (TWEET, EMAIL, NOTIFY, BRIDGE, SMS,
  EVENT_LOG, unknown codes, ...) is answered ILLEGAL_COMMAND and the connection stays up
  (framing does not depend on the command). A malformed frame (message id 0, a body larger
  than the limit) closes the connection. The body limit is the larger of 1024
  bytes and the `buff-in` the device announced. (blynklib 0.2.6 numbers its messages 0 after
  the 65,535th; it is then disconnected and reconnects with fresh ids, as it also does against
  Blynk's server, whose answer with id 0 it rejects.)

What the device receives
- Every frame is strictly smaller than the device's `buff-in` (1024 until announced); a value
  whose frame would not fit is not sent (Blynk's libraries reject such frames and reconnect).
  Its message id is used up all the same.
- Nothing is sent between the RESPONSE to LOGIN and the RESPONSE to the device's INTERNAL info
  (blynklib expects each as the very next frame). The downlink opens after that INTERNAL, after
  the first other frame, or `HANDSHAKE_GRACE` seconds after login, whichever comes first;
  changes meanwhile wait in order.
- Clients are told apart by the INTERNAL info they send after login (`clients.classify`, which
  holds the table of what each library takes). No client is ever sent PROPERTY (19), and a
  PING is started by the server only for the read barrier of blynklib, which answers it:
  * FRAMED (Blynk's C++ library; blynk-library-python 0.2.0) reads frame by frame: frames go
    out as fast as the socket takes them.
  * ONE_PER_READ (`blynklib`) parses only the first message of each socket read,
    so each frame must arrive in a read of its own. Timing alone cannot
    promise that (a retransmitted segment, or a slow device, makes the kernel hand two frames
    over at once), so pinbase uses a read barrier. After every frame (responses and sync
    answers included) it sends a PING, `BARRIER_DELAY` later so that the two rarely share a
    read, and it sends the next frame only once the device has answered that PING. blynklib
    answers only a message that came first in its read, so the answer proves that everything
    sent before the PING was consumed by earlier reads. A PING that shared a read with the
    frame is lost unanswered: it is sent again after 10 ms, then at doubling intervals up to
    `BARRIER_RETRY_MAX`. A device that never answers is given up on after `BARRIER_PROBATION`
    seconds and is paced instead (below); one that has answered before is waited for up to
    `BARRIER_GIVE_UP` seconds per frame. The barrier completes within a round trip, so a frame
    after an idle spell goes out at once: it costs latency only in bursts (about 1.3 ms per
    frame on loopback). RESPONSEs are handled as soon as they are decoded, even while the
    app layer is busy with earlier frames, so the barrier does not wait for the store (unless
    a whole turn of frames waits before the RESPONSE, or reading is paused for the rate limit).
  * UNKNOWN (no INTERNAL at all, or another library) is paced: consecutive frames leave at
    least `PACING_GAP` seconds apart, so that a client reading one message per read still sees
    each frame alone when it keeps up. A blynklib that never answers a barrier PING joins it.
- While the socket does not take more (`pause_writing`), queued frames and barrier PINGs wait;
  a PING due meanwhile goes out `BARRIER_DELAY` after `resume_writing`. Answers that must be the
  very next frame (to LOGIN, to the first INTERNAL) go out regardless.
- A device whose outgoing queue exceeds `MAX_OUTBOX` frames (it stopped reading) is
  disconnected.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import orjson

from pinbase.devices.hardware import codec as codec
from pinbase.devices.hardware.clients import Client, classify
from pinbase.devices.hardware.codec import Frame

LOGIN_TIMEOUT = 10.0
"""Seconds a new connection has to log in, by default."""
LOGIN_BYTES = 4096
"""Bytes a connection may send before its login is accepted, by default."""
TURN_FRAMES = 512
TURN_BYTES = 64 * 1024
"""Frames decoded at a time: at most `TURN_FRAMES`, and no frame starting past `TURN_BYTES`."""
HANDSHAKE_GRACE = 1.0
"""Seconds after login the downlink waits for the device's INTERNAL info."""
HEARTBEAT_FACTOR = 1.5
MIN_HEARTBEAT = 1
MAX_HEARTBEAT = 3600
MIN_BUFFER = 16
QUOTA_WARN_PERIOD = 60.0
MAX_OUTBOX = 10_000
BARRIER_DELAY = 0.001
BARRIER_RETRY_FIRST = 0.01
BARRIER_RETRY_MAX = 0.25
BARRIER_PROBATION = 3.0
BARRIER_GIVE_UP = 5.0
PACING_GAP = 0.005


class State(enum.Enum):
    LOGIN = "login"
    """Waiting for the first frame, which must be a login."""
    AUTHENTICATING = "authenticating"
    """A `Login` request is out; frames wait until it is answered."""
    ACTIVE = "active"
    CLOSED = "closed"


class CloseReason(enum.Enum):
    """Why the session closed; `close_detail` may say more."""

    LOCAL = "closed by the server"
    NOT_LOGIN = "first frame is not a login"
    LOGIN_TIMEOUT = "no login in time"
    LOGIN_TOO_LARGE = "too much data before login"
    INVALID_TOKEN = "invalid token"
    MALFORMED = "malformed frame"
    HEARTBEAT = "heartbeat timeout"
    OUTBOX_FULL = "not reading its downlink"


# requests for the app layer ----------------------------------------------------------------
class Login(NamedTuple):
    """Check the token; answer with `accept_login` or `refuse_login`."""

    msg_id: int
    token: str
    """Empty when the field is missing or not UTF-8."""


PinWrite = tuple[int, bytes, list[str]]
"""One `vw` frame: (message id, pin as sent, value fields)."""


class Write(NamedTuple):
    """Store these values in one write; `refuse` those that cannot be, `quota_exceeded` for the
    first one the rate limit drops."""

    values: list[PinWrite]
    ts: int | None = None
    """The epoch milliseconds of the GROUP they were sent in (`t\\0<ms>`); None: the
    connection's clock stamps them."""


class Read(NamedTuple):
    """Answer with `send_value(pin, texts, msg_id)` per pin that has a value."""

    msg_id: int
    pins: list[bytes] | None
    """None: every datastream."""


class SetProperty(NamedTuple):
    """Set a widget property; `refuse` if it cannot be, `quota_exceeded` if rate limited."""

    msg_id: int
    pin: bytes
    name: str
    value: str


class Rtc(NamedTuple):
    """Answer with `answer_rtc(msg_id, unix_seconds)`."""

    msg_id: int


class Utc(NamedTuple):
    """INTERNAL `utc\\0<what>`: answer with `answer_utc(msg_id, fields)`, or `refuse_body` when
    `what` is not a request the server knows."""

    msg_id: int
    what: str


class Meta(NamedTuple):
    """INTERNAL `meta\\0get|set\\0<name>[\\0<value>]`: answer a get with `answer_meta`, a set
    with `answer_ok`; `refuse_body` when the name or value is refused."""

    msg_id: int
    name: str
    value: str | None
    """None: a get."""


class Info(NamedTuple):
    """The device's first INTERNAL info of the connection (`dev`, `ver`, `fw`...): to be kept
    as its hardware info. Already answered."""

    fields: dict[str, str]


class LogEvent(NamedTuple):
    """EVENT_LOG `code[\\0description]`: log the event; answer `acknowledge`, `refuse_body`
    (unknown code, description too long) or `limit_reached`."""

    msg_id: int
    code: str
    description: str | None


class ResolveEvent(NamedTuple):
    """EVENT_CLEAR `code`: resolve the device's open events of that code; answer `acknowledge`
    or `refuse_body` (unknown code)."""

    msg_id: int
    code: str


Request = Login | Write | Read | SetProperty | Rtc | Utc | Meta | Info | LogEvent | ResolveEvent

GROUP_NONE = -1
"""No GROUP is open."""
GROUP_CLOCK = -2
"""A GROUP without a timestamp (`b`) is open: its values take the connection's clock."""
GROUP_REFUSED = -3
"""A GROUP whose begin was refused is open: its values are refused until its end."""
MAX_GROUP_TS = 2**63 - 1


def _meta_request(msg_id: int, fields: list[bytes]) -> Meta | None:
    """`meta get <name>` or `meta set <name> <value>`, UTF-8 text; None for anything else."""
    try:
        texts = [f.decode() for f in fields[1:]]
    except UnicodeDecodeError:
        return None
    if len(texts) == 2 and texts[0] == "get" and texts[1]:
        return Meta(msg_id, texts[1], None)
    if len(texts) == 3 and texts[0] == "set" and texts[1]:
        return Meta(msg_id, texts[1], texts[2])
    return None


class HardwareSession:
    """One device connection's protocol state; see the module docstring for the behaviour."""

    __slots__ = (
        "_barrier",
        "_barrier_answered",
        "_barrier_attempt",
        "_barrier_deadline",
        "_barrier_started",
        "_buffer",
        "_busy",
        "_classified",
        "_decoder",
        "_direct",
        "_gate_open",
        "_grace_deadline",
        "_group",
        "_heartbeat",
        "_ids",
        "_inbox",
        "_inbox_pos",
        "_last_rx",
        "_login_bytes",
        "_login_deadline",
        "_login_id",
        "_next_send",
        "_outbox",
        "_ping_ids",
        "_ping_on_drain",
        "_quota_warned",
        "_write_paused",
        "client",
        "close_detail",
        "close_reason",
        "pending",
        "state",
    )

    def __init__(
        self,
        heartbeat: float,
        now: float,
        login_timeout: float = LOGIN_TIMEOUT,
        login_bytes: int = LOGIN_BYTES,
    ) -> None:
        """A connection accepted at `now`; `heartbeat` until the device announces its own. It
        has `login_timeout` seconds to log in and may send `login_bytes` bytes until its login
        is accepted."""
        self.state = State.LOGIN
        self.client = Client.UNKNOWN
        self.close_reason: CloseReason | None = None
        self.close_detail = ""
        self._classified = False
        self._decoder = codec.FrameDecoder(
            max(0, min(codec.DEFAULT_BUFFER, login_bytes - codec.HEADER_SIZE))
        )
        self._ids = codec.MessageIds()
        self._login_deadline = now + login_timeout
        self._login_bytes = login_bytes
        """Bytes the connection may still send before its login is accepted."""
        self._login_id = 0
        # reading
        self._inbox: list[Frame] = []
        self._inbox_pos = 0
        """Frames before this index in `_inbox` are handled."""
        self.pending = False
        """Frames received and not yet handled, decoded or not (read-only): `next_request`
        has work, or `receive_data(b"")` decodes the next turn."""
        self._busy = False
        """A request is out with the app layer."""
        self._last_rx = now
        self._heartbeat = heartbeat
        self._buffer = codec.DEFAULT_BUFFER
        """The device's receive buffer: every frame sent is strictly smaller."""
        self._quota_warned = -QUOTA_WARN_PERIOD
        self._group = GROUP_NONE
        """The open GROUP: its timestamp (epoch ms), or one of the `GROUP_` markers."""
        # writing
        self._direct: list[bytes] = []
        """Frames to write now, ahead of the outbox and regardless of the gate and pacing."""
        self._outbox: deque[bytes] | None = None
        """Frames waiting for the gate, pacing or the barrier; made on the first one (an idle
        connection spares the deque's memory)."""
        self._gate_open = False
        self._grace_deadline = 0.0
        self._write_paused = False
        self._next_send = 0.0
        """Pacing: when an UNKNOWN client may be sent its next frame."""
        self._barrier = False
        self._barrier_started = 0.0
        self._barrier_attempt = 0
        self._barrier_deadline: float | None = None
        """When the barrier next sends a PING (or gives up)."""
        self._barrier_answered = False
        self._ping_ids: list[int] = []
        """PINGs of the current read barrier; an answer to any of them completes it."""
        self._ping_on_drain = False

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def has_output(self) -> bool:
        """`data_to_send` may have bytes (pacing may still hold a queued frame back)."""
        return bool(self._direct) or bool(
            self._outbox and self._gate_open and not self._write_paused and not self._barrier
        )

    @property
    def heartbeat_deadline(self) -> float:
        """When a device that stays silent from now on is disconnected (once logged in)."""
        return self._last_rx + HEARTBEAT_FACTOR * self._heartbeat

    def close(self, reason: CloseReason = CloseReason.LOCAL, detail: str = "") -> None:
        """Stop: nothing more is received, queued or sent, except frames already released to
        `data_to_send` (a refused login's answer)."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = reason
        self.close_detail = detail
        self._inbox = []
        self._inbox_pos = 0
        self.pending = False
        self._outbox = None
        self._barrier = False
        self._barrier_deadline = None

    # receiving ------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> bool:
        """Take bytes read from the socket (b"": none, decode what waits); True when frames
        wait to be handled.

        Frames are decoded a turn at a time: up to `TURN_FRAMES` (and `TURN_BYTES`) wait for
        `next_request`; bytes beyond stay undecoded (`pending` stays True) until the frames
        before them are handled and `receive_data(b"")` decodes the next turn. RESPONSEs
        (answers to the read barrier's PINGs) take effect as soon as they are decoded. A
        malformed frame, or more than `login_bytes` bytes before the login is accepted,
        closes the session."""
        state = self.state
        if state is State.CLOSED:
            return False
        if data:
            self._last_rx = now
            if state is not State.ACTIVE:
                self._login_bytes -= len(data)
                if self._login_bytes < 0:
                    self.close(CloseReason.LOGIN_TOO_LARGE)
                    return False
        inbox = self._inbox
        decoder = self._decoder
        try:
            frames = decoder.feed(data, TURN_FRAMES - len(inbox) + self._inbox_pos, TURN_BYTES)
        except codec.CodecError as exc:
            self.close(CloseReason.MALFORMED, str(exc))
            return False
        if state is not State.ACTIVE:
            inbox.extend(frames)
        else:
            for frame in frames:
                if frame.command == codec.RESPONSE:
                    self._on_response(frame)
                else:
                    inbox.append(frame)
        self.pending = self._inbox_pos < len(inbox) or decoder.more
        return self.pending

    def next_request(self, now: float) -> Request | None:
        """Handle received frames in order until one needs the app layer: that request, or None
        once every frame is handled (or the session waits for a login answer, or closed).

        The adapter performs each request (and answers it) before asking for the next."""
        request: Request | None = None
        if self.pending:
            if self.state is State.ACTIVE:
                request = self._next_active(now)
            elif self.state is State.LOGIN:
                request = self._login_request()
        self._busy = request is not None
        return request

    def _login_request(self) -> Login | None:
        frame = self._inbox[self._inbox_pos]
        self._inbox_pos += 1
        self.pending = self._inbox_pos < len(self._inbox) or self._decoder.more
        if frame.command not in (codec.LOGIN, codec.HW_LOGIN):
            self.close(CloseReason.NOT_LOGIN, f"command {frame.command}")
            return None
        fields = frame.fields()
        try:
            token = fields[0].decode() if fields else ""
        except UnicodeDecodeError:
            token = ""
        self.state = State.AUTHENTICATING
        self._login_id = frame.msg_id
        return Login(frame.msg_id, token)

    def _next_active(self, now: float) -> Request | None:
        inbox = self._inbox
        pos = self._inbox_pos
        end = len(inbox)
        values: list[PinWrite] | None = None
        request: Request | None = None
        group = self._group
        while pos < end:
            frame = inbox[pos]
            command = frame.command
            fields: list[bytes] | None = None
            if command == codec.HARDWARE:
                fields = frame.fields()
                if len(fields) >= 3 and fields[0] == b"vw":
                    pos += 1
                    if not self._gate_open:
                        self._open_gate(now)
                    if group == GROUP_REFUSED:
                        self.refuse(frame.msg_id)
                        if self.state is not State.ACTIVE:
                            break
                        continue
                    try:
                        texts = [f.decode() for f in fields[2:]]
                    except UnicodeDecodeError:
                        self.refuse(frame.msg_id)
                        if self.state is not State.ACTIVE:
                            break
                        continue
                    if values is None:
                        values = []
                    values.append((frame.msg_id, fields[1], texts))
                    continue
            if values is not None:
                break  # the writes before this frame go first
            pos += 1
            if not self._gate_open and command != codec.INTERNAL:
                self._open_gate(now)
            request = self._handle(frame, fields, now)
            if request is not None or self.state is not State.ACTIVE:
                break
            group = self._group  # a GROUP frame opens or ends a group
        if self.state is State.ACTIVE:
            if pos < end:
                self._inbox_pos = pos
            else:
                inbox.clear()
                self._inbox_pos = 0
                self.pending = self._decoder.more
        # Writes decoded before the session closed are still stored.
        if values is not None:
            return Write(values, group if group >= 0 else None)
        return request

    def _handle(self, frame: Frame, fields: list[bytes] | None, now: float) -> Request | None:
        """Answer one frame (not a `vw`), or turn it into a request."""
        command = frame.command
        if command == codec.HARDWARE:
            assert fields is not None
            if len(fields) >= 2 and fields[0] == b"vr":
                return Read(frame.msg_id, fields[1:])
            self.refuse(frame.msg_id)
        elif command == codec.PING:
            self._answer(frame.msg_id, codec.OK)
        elif command == codec.HARDWARE_SYNC:
            fields = frame.fields()
            if fields and fields[0] == b"vr":
                fields = fields[1:]
            return Read(frame.msg_id, fields or None)
        elif command == codec.INTERNAL:
            return self._internal(frame, now)
        elif command == codec.PROPERTY:
            return self._property(frame)
        elif command == codec.GROUP:
            self._group_frame(frame)
        elif command in (codec.EVENT_LOG, codec.EVENT_CLEAR):
            return self._event(frame)
        elif command in (codec.LOGIN, codec.HW_LOGIN):
            self._answer(frame.msg_id, codec.ALREADY_REGISTERED)
        else:
            self.refuse(frame.msg_id)
        return None

    def _group_frame(self, frame: Frame) -> None:
        """GROUP `t\\0<epoch ms>` (begin, values at that time), `b` (begin, values at the
        connection's clock) or `e` (end). A begin while a group is open replaces it; an end
        without one is harmless. A malformed GROUP is answered ILLEGAL_COMMAND_BODY and, when
        it was a begin, the values up to the next end are refused: they are not stored at a
        time the device did not mean."""
        fields = frame.fields()
        kind = fields[0] if fields else b""
        if kind == b"e" and len(fields) == 1:
            self._group = GROUP_NONE
        elif kind == b"b" and len(fields) == 1:
            self._group = GROUP_CLOCK
        elif kind == b"t" and len(fields) == 2 and (ts := _epoch_ms(fields[1])) is not None:
            self._group = ts
        else:
            if kind in (b"t", b"b"):
                self._group = GROUP_REFUSED
            self.refuse_body(frame.msg_id)

    def _internal(self, frame: Frame, now: float) -> Rtc | Utc | Meta | Info | None:
        fields = frame.fields()
        if fields and fields[0] == b"meta":
            meta = _meta_request(frame.msg_id, fields)
            if meta is None:
                self.refuse_body(frame.msg_id)
            return meta
        if fields and fields[0] == b"rtc":
            return Rtc(frame.msg_id)
        if fields and fields[0] == b"utc":
            what = fields[1] if len(fields) == 2 else b""
            if what.isascii() and what.replace(b"_", b"").isalpha():
                return Utc(frame.msg_id, what.decode())
            self.refuse_body(frame.msg_id)
            return None
        info = codec.key_values(fields)
        self._configure(info)
        first = None
        if info and not self._classified:
            self._classified = True
            self.client = classify(info)
            first = Info(info)
        if self._gate_open:
            self._answer(frame.msg_id, codec.OK)
        else:
            # The answer must be the very next frame the device sees: it bypasses the queue.
            self._direct.append(codec.response(frame.msg_id, codec.OK))
            self._open_gate(now, after_frame=True)
        return first

    def _configure(self, info: dict[str, str]) -> None:
        beat = info.get("h-beat", "")
        if beat.isascii() and beat.isdigit() and MIN_HEARTBEAT <= int(beat) <= MAX_HEARTBEAT:
            self._heartbeat = float(int(beat))
        size = info.get("buff-in", "")
        if size.isascii() and size.isdigit() and int(size) >= MIN_BUFFER:
            self._buffer = min(int(size), codec.HEADER_SIZE + codec.MAX_BODY + 1)
            self._decoder.max_body = min(max(self._buffer, codec.DEFAULT_BUFFER), codec.MAX_BODY)

    def _property(self, frame: Frame) -> SetProperty | None:
        fields = frame.fields()
        if len(fields) < 3:
            self.refuse(frame.msg_id)
            return None
        try:
            name = fields[1].decode()
            texts = [f.decode() for f in fields[2:]]
        except UnicodeDecodeError:
            self.refuse(frame.msg_id)
            return None
        value = texts[0] if len(texts) == 1 else orjson.dumps(texts).decode()
        return SetProperty(frame.msg_id, fields[0], name, value)

    def _event(self, frame: Frame) -> LogEvent | ResolveEvent | None:
        """EVENT_LOG `code` or `code\\0description`; EVENT_CLEAR `code`. A code or description
        that is not UTF-8, or more fields, is ILLEGAL_COMMAND_BODY."""
        fields = frame.fields()
        most = 2 if frame.command == codec.EVENT_LOG else 1
        try:
            texts = [f.decode() for f in fields]
        except UnicodeDecodeError:
            texts = []
        if not 1 <= len(texts) <= most or not texts[0]:
            self.refuse_body(frame.msg_id)
            return None
        if frame.command == codec.EVENT_CLEAR:
            return ResolveEvent(frame.msg_id, texts[0])
        return LogEvent(frame.msg_id, texts[0], texts[1] if len(texts) == 2 else None)

    def _on_response(self, frame: Frame) -> None:
        if self._barrier and frame.msg_id in self._ping_ids:
            self._barrier_answered = True
            self._barrier = False
            self._ping_ids.clear()
            self._barrier_deadline = None

    # answers from the app layer ---------------------------------------------------------------
    def accept_login(self, now: float) -> None:
        """The token opened a device: RESPONSE 200, and the frames after the login follow."""
        if self.state is not State.AUTHENTICATING:
            return
        self.state = State.ACTIVE
        self._decoder.max_body = codec.DEFAULT_BUFFER
        self._direct.append(codec.response(self._login_id, codec.OK))
        self._grace_deadline = now + HANDSHAKE_GRACE
        # RESPONSEs that came with the login answer nothing: no PING has been sent yet.
        rest = [f for f in self._inbox[self._inbox_pos :] if f.command != codec.RESPONSE]
        self._inbox = rest
        self._inbox_pos = 0
        self.pending = bool(rest) or self._decoder.more

    def refuse_login(self) -> None:
        """No device has that token: RESPONSE 9, then the connection closes."""
        if self.state is not State.AUTHENTICATING:
            return
        self._direct.append(codec.response(self._login_id, codec.INVALID_TOKEN))
        self.close(CloseReason.INVALID_TOKEN)

    def refuse(self, msg_id: int) -> None:
        """RESPONSE ILLEGAL_COMMAND to the frame `msg_id`: it could not be applied."""
        self._answer(msg_id, codec.ILLEGAL_COMMAND)

    def refuse_body(self, msg_id: int) -> None:
        """RESPONSE ILLEGAL_COMMAND_BODY to the frame `msg_id`: a command the server knows,
        with a body it cannot read."""
        self._answer(msg_id, codec.ILLEGAL_COMMAND_BODY)

    def quota_exceeded(self, msg_id: int, now: float) -> None:
        """The rate limit dropped the frame `msg_id`: RESPONSE QUOTA_LIMIT, at most once a
        `QUOTA_WARN_PERIOD`."""
        if now - self._quota_warned >= QUOTA_WARN_PERIOD:
            self._quota_warned = now
            self._answer(msg_id, codec.QUOTA_LIMIT)

    def acknowledge(self, msg_id: int) -> None:
        """RESPONSE OK to the frame `msg_id` (a logged or resolved event)."""
        self._answer(msg_id, codec.OK)

    def limit_reached(self, msg_id: int) -> None:
        """RESPONSE QUOTA_LIMIT to the frame `msg_id`: an event over Blynk's limits (every
        time: an event refused is never silent)."""
        self._answer(msg_id, codec.QUOTA_LIMIT)

    def answer_rtc(self, msg_id: int, unix_seconds: int) -> None:
        self._send(codec.message(codec.INTERNAL, msg_id, ("rtc", str(unix_seconds))))

    def answer_meta(self, msg_id: int, name: str, value: str) -> None:
        """INTERNAL `meta\\0<name>\\0<value>`: a metafield's value, for `InternalPinMETA`."""
        self._send(codec.message(codec.INTERNAL, msg_id, ("meta", name, value)))

    def answer_ok(self, msg_id: int) -> None:
        """RESPONSE 200 to the frame `msg_id`."""
        self._answer(msg_id, codec.OK)

    def answer_utc(self, msg_id: int, fields: Sequence[str]) -> None:
        """INTERNAL `utc\\0<what>\\0<value>...` (`fields` from `what` on), the way Blynk's
        server answers a request for the device's `InternalPinUTC`."""
        self._send(codec.message(codec.INTERNAL, msg_id, ("utc", *fields)))

    # downlink ---------------------------------------------------------------------------------
    def send_value(self, pin: str, texts: Sequence[str], msg_id: int | None = None) -> bool:
        """Queue HARDWARE `vw` for `pin` (`v2` or `2`), with `msg_id` when it answers a read;
        False when it is not queued (too large for the device, or closed)."""
        if self.state is State.CLOSED:
            return False
        if msg_id is None:
            msg_id = self._ids.next()
        try:
            frame = codec.hardware_write(msg_id, codec.bare_pin(pin), texts)
        except codec.CodecError:
            return False  # larger than any frame, so than any device's buffer
        return self._send(frame)

    def _answer(self, msg_id: int, status: int) -> None:
        self._send(codec.response(msg_id, status))

    def _send(self, frame: bytes) -> bool:
        """Queue a frame for the device: sent in order, as its kind of client can take them."""
        if self.state is State.CLOSED or len(frame) >= self._buffer:
            return False
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        outbox.append(frame)
        if len(outbox) > MAX_OUTBOX:
            self.close(CloseReason.OUTBOX_FULL)
            return False
        return True

    def _open_gate(self, now: float, after_frame: bool = False) -> None:
        if self._gate_open:
            return
        self._gate_open = True
        if after_frame:
            self._after_send(now)

    def _after_send(self, now: float) -> None:
        if self.client is Client.ONE_PER_READ:
            self._barrier = True
            self._barrier_started = now
            self._barrier_attempt = 0
            self._barrier_deadline = now + BARRIER_DELAY
        elif self.client is Client.UNKNOWN:
            self._next_send = now + PACING_GAP

    def data_to_send(self, now: float) -> bytes:
        """What may be written now: answers that bypass the queue, then queued frames as far as
        the gate, the write pause, pacing and the read barrier allow."""
        out = self._direct
        outbox = self._outbox
        if outbox and self._gate_open and not self._write_paused and not self._barrier:
            client = self.client
            if client is Client.FRAMED:
                out.extend(outbox)
                outbox.clear()
            elif client is Client.ONE_PER_READ or now >= self._next_send:
                out.append(outbox.popleft())  # one frame, then the barrier or the pacing gap
                self._after_send(now)
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data

    def pause_writing(self) -> None:
        """The socket takes no more for now: queued frames and barrier PINGs wait."""
        self._write_paused = True

    def resume_writing(self, now: float) -> None:
        self._write_paused = False
        if self._ping_on_drain:
            self._ping_on_drain = False
            self._barrier_deadline = now + BARRIER_DELAY

    # time ---------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When `on_timer` has something to do (None: never). Call it after `data_to_send`."""
        state = self.state
        if state is not State.ACTIVE:
            return None if state is State.CLOSED else self._login_deadline
        deadline = self._last_rx + HEARTBEAT_FACTOR * self._heartbeat
        if not self._gate_open:
            deadline = min(deadline, self._grace_deadline)
        if self._barrier_deadline is not None:
            deadline = min(deadline, self._barrier_deadline)
        if (
            self._outbox
            and self.client is Client.UNKNOWN
            and self._gate_open
            and not self._write_paused
            and not self._barrier
        ):
            deadline = min(deadline, self._next_send)  # pacing: the next frame may leave then
        return deadline

    def on_timer(self, now: float) -> None:
        """Do what is due at `now`: the login timeout, the heartbeat check, the end of the
        handshake grace, a barrier PING (or giving up on it). Pacing needs nothing here:
        `data_to_send` releases the next frame once its time has come."""
        state = self.state
        if state is State.CLOSED:
            return
        if state is not State.ACTIVE:
            if now >= self._login_deadline:
                self.close(CloseReason.LOGIN_TIMEOUT)
            return
        if now >= self._last_rx + HEARTBEAT_FACTOR * self._heartbeat:
            if self._busy or self.pending:
                self._last_rx = now
            else:
                self.close(CloseReason.HEARTBEAT)
                return
        if not self._gate_open and now >= self._grace_deadline:
            self._open_gate(now)
        if self._barrier_deadline is not None and now >= self._barrier_deadline:
            self._barrier_ping(now)

    def _barrier_ping(self, now: float) -> None:
        self._barrier_deadline = None
        if not self._barrier:
            return
        waited = now - self._barrier_started
        if waited >= (BARRIER_GIVE_UP if self._barrier_answered else BARRIER_PROBATION):
            self._ping_ids.clear()
            self._barrier = False
            if not self._barrier_answered:
                self.client = Client.UNKNOWN  # never answered: pace it instead
            self._next_send = now + PACING_GAP
            return
        if self._write_paused:
            self._ping_on_drain = True
            return
        # Earlier PINGs of this barrier stay valid: over TLS a PING can wait in the device's
        # TLS buffer, unread, until the next record arrives and is then answered late.
        ping_id = self._ids.next()
        self._ping_ids.append(ping_id)
        self._direct.append(codec.ping(ping_id))
        delay = min(BARRIER_RETRY_FIRST * 2**self._barrier_attempt, BARRIER_RETRY_MAX)
        self._barrier_attempt += 1
        self._barrier_deadline = now + delay


def _epoch_ms(text: bytes) -> int | None:
    """A non-negative epoch millisecond count, as digits (no sign, no space), or None."""
    if not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= MAX_GROUP_TS else None
