"""The hardware protocol's session state machine, without sockets or clocks: bytes and explicit
times in, requests and bytes out."""

from __future__ import annotations

import pytest

from pinbase.devices.hardware import codec as codec
from pinbase.devices.hardware.clients import Client, classify
from pinbase.devices.hardware.session import (
    BARRIER_DELAY,
    BARRIER_GIVE_UP,
    BARRIER_PROBATION,
    BARRIER_RETRY_FIRST,
    BARRIER_RETRY_MAX,
    HANDSHAKE_GRACE,
    LOGIN_BYTES,
    LOGIN_TIMEOUT,
    MAX_OUTBOX,
    PACING_GAP,
    QUOTA_WARN_PERIOD,
    TURN_BYTES,
    TURN_FRAMES,
    CloseReason,
    HardwareSession,
    Info,
    LogEvent,
    Login,
    Meta,
    Read,
    Request,
    ResolveEvent,
    Rtc,
    SetProperty,
    State,
    Utc,
    Write,
)

T0 = 1000.0
HEARTBEAT = 10.0
TOKEN = "t" * 32
RESPONSE, PING, HARDWARE, INTERNAL, PROPERTY = (
    codec.RESPONSE,
    codec.PING,
    codec.HARDWARE,
    codec.INTERNAL,
    codec.PROPERTY,
)
OK, QUOTA_LIMIT, ILLEGAL, INVALID_TOKEN = (
    codec.OK,
    codec.QUOTA_LIMIT,
    codec.ILLEGAL_COMMAND,
    codec.INVALID_TOKEN,
)
ARDUINO = ("ver", "1.3.2", "h-beat", "45", "buff-in", "1024", "dev", "ESP32", "build", "x")
BLYNKLIB = ("ver", "0.2.6", "buff-in", "1024", "h-beat", "10", "dev", "python")
BLYNK_LIBRARY_PYTHON = ("ver", "0.2.0", "h-beat", "10", "buff-in", "1024", "dev", "python")
OTHER = ("ver", "1.0", "dev", "linux")

Sent = tuple[int, int, "int | list[str]"]


def frame(command: int, msg_id: int, *fields: str | bytes) -> bytes:
    return codec.message(command, msg_id, fields)


def frames_of(data: bytes) -> list[Sent]:
    """Bytes the session sent, as (command, msg_id, status or text fields)."""
    decoded = codec.FrameDecoder(codec.MAX_BODY).feed(data)
    return [
        (
            f.command,
            f.msg_id,
            f.status if f.command == RESPONSE else [x.decode() for x in f.fields()],
        )
        for f in decoded
    ]


class Device:
    """The far end of one session, with a hand-driven clock."""

    def __init__(self, heartbeat: float = HEARTBEAT) -> None:
        self.now = T0
        self.session = HardwareSession(heartbeat, self.now)

    def send(self, *frames: bytes) -> bool:
        return self.session.receive_data(b"".join(frames), self.now)

    def request(self) -> Request | None:
        return self.session.next_request(self.now)

    def requests(self) -> list[Request]:
        """Every request the received frames become (none of them answered)."""
        found = []
        while (request := self.request()) is not None:
            found.append(request)
        assert not self.session.pending or self.session.state is State.AUTHENTICATING
        return found

    def received(self) -> list[Sent]:
        return frames_of(self.session.data_to_send(self.now))

    def at(self, now: float) -> list[Sent]:
        """Move the clock to `now`, fire the timer, and take what may be sent then."""
        self.now = now
        self.session.on_timer(now)
        return self.received()

    def login(self, *info: str) -> HardwareSession:
        self.send(frame(codec.LOGIN, 1, TOKEN))
        assert self.request() == Login(1, TOKEN)
        self.session.accept_login(self.now)
        assert self.received() == [(RESPONSE, 1, OK)]
        if info:
            self.send(frame(INTERNAL, 2, *info))
            # the first INTERNAL info of a connection is handed on, to be kept
            assert self.requests() == [Info(dict(zip(info[::2], info[1::2], strict=True)))]
            assert self.received()[0] == (RESPONSE, 2, OK)
        return self.session


def logged_in(*info: str) -> Device:
    device = Device()
    device.login(*info)
    return device


def framed() -> Device:
    return logged_in(*ARDUINO)


# login ------------------------------------------------------------------------------------
def test_login_accepted() -> None:
    device = Device()
    assert device.session.state is State.LOGIN
    assert device.send(frame(codec.LOGIN, 7, TOKEN))
    assert device.request() == Login(7, TOKEN)
    assert device.session.state is State.AUTHENTICATING
    assert device.request() is None  # frames wait for the answer
    device.session.accept_login(device.now)
    assert device.session.state is State.ACTIVE
    assert device.received() == [(RESPONSE, 7, OK)]


def test_hw_login_is_a_login_too() -> None:
    device = Device()
    device.send(frame(codec.HW_LOGIN, 3, TOKEN))
    assert device.request() == Login(3, TOKEN)


def test_login_without_a_readable_token_asks_with_an_empty_one() -> None:
    device = Device()
    device.send(frame(codec.LOGIN, 1, b"\xff\xfe"))
    assert device.request() == Login(1, "")


def test_login_refused_is_answered_9_and_closes() -> None:
    device = Device()
    device.send(frame(codec.LOGIN, 4, TOKEN), frame(PING, 5))
    assert isinstance(device.request(), Login)
    device.session.refuse_login()
    assert device.session.closed and device.session.close_reason is CloseReason.INVALID_TOKEN
    assert device.received() == [(RESPONSE, 4, INVALID_TOKEN)]
    assert device.request() is None
    assert device.session.next_deadline() is None


def test_frames_after_the_login_follow_once_it_is_accepted() -> None:
    device = Device()
    device.send(frame(codec.LOGIN, 1, TOKEN), frame(PING, 2), codec.response(3, OK))
    assert isinstance(device.request(), Login)
    device.send(frame(HARDWARE, 4, "vw", "1", "5"))
    device.session.accept_login(device.now)
    assert device.requests() == [Write([(4, b"1", ["5"])])]
    assert device.received() == [(RESPONSE, 1, OK), (RESPONSE, 2, OK)]


def test_no_login_within_the_timeout_closes() -> None:
    device = Device()
    assert device.session.next_deadline() == T0 + LOGIN_TIMEOUT
    device.at(T0 + LOGIN_TIMEOUT - 0.001)
    assert not device.session.closed
    device.at(T0 + LOGIN_TIMEOUT)
    assert device.session.close_reason is CloseReason.LOGIN_TIMEOUT


def test_a_login_still_being_checked_times_out_too() -> None:
    device = Device()
    device.send(frame(codec.LOGIN, 1, TOKEN))
    assert isinstance(device.request(), Login)
    device.at(T0 + LOGIN_TIMEOUT)
    assert device.session.close_reason is CloseReason.LOGIN_TIMEOUT
    device.session.accept_login(device.now)  # too late: ignored
    assert device.received() == []


def test_first_frame_must_be_a_login() -> None:
    device = Device()
    device.send(frame(PING, 1), frame(codec.LOGIN, 2, TOKEN))
    assert device.request() is None
    assert device.session.close_reason is CloseReason.NOT_LOGIN
    assert device.session.close_detail == f"command {PING}"
    assert device.received() == []


def test_a_second_login_is_answered_already_registered() -> None:
    device = framed()
    device.send(frame(codec.LOGIN, 9, TOKEN))
    device.send(frame(codec.HW_LOGIN, 10, "another token"))
    assert device.requests() == []
    assert device.received() == [
        (RESPONSE, 9, codec.ALREADY_REGISTERED),
        (RESPONSE, 10, codec.ALREADY_REGISTERED),
    ]
    assert device.session.state is State.ACTIVE


@pytest.mark.parametrize(
    "data",
    [
        frame(PING, 0),
        codec.HEADER.pack(HARDWARE, 9, 60_000) + b"vw\x001\x00",
    ],
    ids=["message id 0", "body above the limit"],
)
def test_a_malformed_frame_closes(data: bytes) -> None:
    device = logged_in()
    assert not device.send(data)
    assert device.session.close_reason is CloseReason.MALFORMED
    assert device.session.close_detail
    assert not device.send(frame(PING, 3))  # nothing more is read


def test_a_body_above_the_default_buffer_closes_before_login() -> None:
    device = Device()
    device.send(frame(codec.LOGIN, 1, "x" * 1025))
    assert device.session.close_reason is CloseReason.MALFORMED


def test_bytes_before_the_login_is_accepted_are_limited() -> None:
    session = HardwareSession(HEARTBEAT, T0, login_bytes=100)
    login = frame(codec.LOGIN, 1, TOKEN)  # 37 bytes
    assert session.receive_data(login + frame(PING, 2) * 12, T0)  # 97: within the limit
    assert session.next_request(T0) == Login(1, TOKEN)
    assert not session.receive_data(frame(PING, 3), T0)  # while the login is checked: 102
    assert session.close_reason is CloseReason.LOGIN_TOO_LARGE
    session.accept_login(T0)  # too late: ignored
    assert session.data_to_send(T0) == b""


def test_a_stranger_flooding_frames_is_closed_before_they_are_decoded() -> None:
    device = Device()
    assert not device.send(frame(PING, 1) * (LOGIN_BYTES // 5 + 1))
    assert device.session.close_reason is CloseReason.LOGIN_TOO_LARGE
    assert device.request() is None


def test_the_byte_limit_ends_with_the_login() -> None:
    device = logged_in()
    assert device.send(*(frame(HARDWARE, i, "vw", "1", str(i)) for i in range(1, 1001)))
    assert not device.session.closed


def test_a_login_frame_above_the_limit_closes_at_its_header() -> None:
    session = HardwareSession(HEARTBEAT, T0, login_bytes=64)
    assert not session.receive_data(codec.HEADER.pack(codec.LOGIN, 1, 60), T0)  # 65 bytes
    assert session.close_reason is CloseReason.MALFORMED
    device = Device()
    device.session = HardwareSession(HEARTBEAT, T0, login_bytes=64)
    device.login()  # a login that fits is served, and after it frames may be larger
    assert device.send(frame(HARDWARE, 2, "vw", "3", "x" * 1000))
    assert device.requests() == [Write([(2, b"3", ["x" * 1000])])]


def test_the_login_timeout_counts_from_the_accept_however_the_bytes_trickle() -> None:
    session = HardwareSession(HEARTBEAT, T0, login_timeout=2.0)
    login = frame(codec.LOGIN, 1, TOKEN)
    for index in range(len(login) - 1):
        session.receive_data(login[index : index + 1], T0 + index * 0.05)
        assert session.next_deadline() == T0 + 2.0
    session.on_timer(T0 + 2.0)
    assert session.close_reason is CloseReason.LOGIN_TIMEOUT


# turns --------------------------------------------------------------------------------------
def test_frames_are_decoded_and_handled_a_turn_at_a_time() -> None:
    device = framed()  # answers go out as soon as they are queued
    assert device.send(*(frame(PING, i) for i in range(1, 2 * TURN_FRAMES + 11)))
    for size in (TURN_FRAMES, TURN_FRAMES, 10):
        assert device.request() is None
        assert len(device.received()) == size
        if size == 10:
            break
        assert device.session.pending  # the rest waits, undecoded
        assert device.request() is None  # until it is asked for
        assert device.received() == []
        assert device.session.receive_data(b"", device.now)
    assert not device.session.pending


def test_a_turn_of_writes_is_one_write_and_a_turn_spans_at_most_turn_bytes() -> None:
    device = logged_in()
    device.send(*(frame(HARDWARE, i, "vw", "1", str(i)) for i in range(1, TURN_FRAMES + 2)))
    first = device.request()
    assert isinstance(first, Write) and len(first.values) == TURN_FRAMES
    assert device.request() is None
    device.session.receive_data(b"", device.now)
    assert device.requests() == [Write([(TURN_FRAMES + 1, b"1", [str(TURN_FRAMES + 1)])])]
    big = frame(HARDWARE, 1, "vw", "3", "x" * 993)  # 1,005 bytes
    device.send(big * 100)
    write = device.request()
    assert isinstance(write, Write) and len(write.values) == TURN_BYTES // len(big) + 1
    assert device.session.pending


# what the device sends ----------------------------------------------------------------------
def test_writes_of_one_read_become_one_request_per_pin_spelling() -> None:
    device = logged_in()
    device.send(
        frame(HARDWARE, 10, "vw", "1", "21.5"),
        frame(HARDWARE, 11, "vw", "V2", "40"),
        frame(HARDWARE, 12, "vw", "v3", "héllo"),
        frame(HARDWARE, 13, "vw", "4", "24.5", "-13.25"),
    )
    assert device.requests() == [
        Write(
            [
                (10, b"1", ["21.5"]),
                (11, b"V2", ["40"]),
                (12, b"v3", ["héllo"]),
                (13, b"4", ["24.5", "-13.25"]),
            ]
        )
    ]
    assert device.received() == []  # writes are not acknowledged


def test_other_frames_end_a_run_of_writes_and_wait_for_it() -> None:
    device = logged_in()
    device.send(
        frame(HARDWARE, 10, "vw", "1", "1"),
        frame(PING, 11),
        frame(HARDWARE, 12, "vw", "1", "2"),
        frame(HARDWARE, 13, "vr", "1"),
    )
    assert device.request() == Write([(10, b"1", ["1"])])
    assert device.received() == []  # the PING is answered once the write is done
    assert device.request() == Write([(12, b"1", ["2"])])
    assert device.received() == [(RESPONSE, 11, OK)]
    assert device.request() == Read(13, [b"1"])
    assert device.request() is None


def test_frames_that_arrive_while_a_request_is_out_are_handled_next() -> None:
    device = logged_in()
    device.send(frame(HARDWARE, 10, "vw", "1", "1"))
    assert device.request() == Write([(10, b"1", ["1"])])
    assert not device.session.pending
    device.send(frame(HARDWARE, 11, "vw", "1", "2"), frame(PING, 12))
    assert device.session.pending
    assert device.requests() == [Write([(11, b"1", ["2"])])]
    assert device.received() == [(RESPONSE, 12, OK)]


def test_a_write_that_cannot_be_stored_is_illegal_with_its_id() -> None:
    device = framed()
    device.send(
        frame(HARDWARE, 50, "vw", "2", "5"),
        frame(HARDWARE, 51, "vw", "2", b"\xff"),  # not UTF-8: refused by the session
        frame(HARDWARE, 52, "vw", "9", "1"),
    )
    request = device.request()
    assert request == Write([(50, b"2", ["5"]), (52, b"9", ["1"])])
    device.session.refuse(52)  # the app layer found no datastream on V9
    assert device.received() == [(RESPONSE, 51, ILLEGAL), (RESPONSE, 52, ILLEGAL)]


@pytest.mark.parametrize(
    "fields",
    [("vw", "1"), ("vr",), ("dw", "13", "1"), ()],
    ids=["vw without value", "vr without pin", "digital write", "empty"],
)
def test_other_hardware_commands_are_illegal(fields: tuple[str, ...]) -> None:
    device = logged_in()
    device.send(frame(HARDWARE, 20, *fields))
    assert device.requests() == []
    assert device.received() == [(RESPONSE, 20, ILLEGAL)]


def test_unknown_commands_are_illegal_and_harmless() -> None:
    device = framed()
    device.send(frame(codec.NOTIFY, 21, "hello"), frame(PING, 22))
    assert device.requests() == []
    assert device.received() == [(RESPONSE, 21, ILLEGAL), (RESPONSE, 22, OK)]
    assert not device.session.closed


def test_quota_warning_at_most_once_per_period() -> None:
    device = framed()
    device.session.quota_exceeded(100, device.now)
    device.session.quota_exceeded(101, device.now + 1)
    assert device.received() == [(RESPONSE, 100, QUOTA_LIMIT)]
    device.now = T0 + QUOTA_WARN_PERIOD - 0.001
    device.session.quota_exceeded(102, device.now)
    assert device.received() == []
    device.now = T0 + QUOTA_WARN_PERIOD
    device.session.quota_exceeded(103, device.now)
    assert device.received() == [(RESPONSE, 103, QUOTA_LIMIT)]


def test_vr_asks_for_pins_and_is_answered_with_bare_pins_and_its_id() -> None:
    device = framed()
    device.send(frame(HARDWARE, 30, "vr", "V1", "4", "v9"))
    assert device.requests() == [Read(30, [b"V1", b"4", b"v9"])]
    device.session.send_value("v1", ["19.5"], 30)
    device.session.send_value("4", ["2.25", "48.5"], 30)
    assert device.received() == [
        (HARDWARE, 30, ["vw", "1", "19.5"]),
        (HARDWARE, 30, ["vw", "4", "2.25", "48.5"]),
    ]


@pytest.mark.parametrize(
    ("fields", "pins"),
    [((), None), (("vr",), None), (("vr", "2", "V3"), [b"2", b"V3"])],
    ids=["empty", "vr", "vr pins"],
)
def test_sync(fields: tuple[str, ...], pins: list[bytes] | None) -> None:
    device = logged_in()
    device.send(frame(codec.HARDWARE_SYNC, 31, *fields))
    assert device.requests() == [Read(31, pins)]


def test_internal_rtc_is_answered_with_the_time_the_app_gives() -> None:
    device = framed()
    device.send(frame(INTERNAL, 40, "rtc"))
    assert device.requests() == [Rtc(40)]
    device.session.answer_rtc(40, 1_700_000_000)
    assert device.received() == [(INTERNAL, 40, ["rtc", "1700000000"])]


def test_device_property_request() -> None:
    device = framed()
    device.send(
        frame(PROPERTY, 60, "1", "label", "Outside"),
        frame(PROPERTY, 61, "V2", "labels", "low", "high"),
        frame(PROPERTY, 62, "1", "label"),
        frame(PROPERTY, 63, "1", b"\xff", "x"),
    )
    assert device.requests() == [
        SetProperty(60, b"1", "label", "Outside"),
        SetProperty(61, b"V2", "labels", '["low","high"]'),
    ]
    assert device.received() == [(RESPONSE, 62, ILLEGAL), (RESPONSE, 63, ILLEGAL)]


def test_internal_info_sets_heartbeat_and_buffer() -> None:
    device = logged_in("ver", "1.0", "h-beat", "20", "buff-in", "4096")
    assert device.session.heartbeat_deadline == T0 + 1.5 * 20
    body = "x" * 3000  # above the default limit of 1024, below the announced 4096
    assert device.send(frame(HARDWARE, 3, "vw", "3", body))
    assert device.requests() == [Write([(3, b"3", [body])])]


@pytest.mark.parametrize("beat", ["0", "3601", "ten", "-5"])
def test_heartbeat_out_of_range_is_ignored(beat: str) -> None:
    device = logged_in("h-beat", beat)
    assert device.session.heartbeat_deadline == T0 + 1.5 * HEARTBEAT


def info(*pairs: str) -> dict[str, str]:
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def test_clients_are_told_apart_by_their_first_info() -> None:
    assert classify(info(*ARDUINO)) is Client.FRAMED
    assert classify(info(*BLYNKLIB)) is Client.ONE_PER_READ
    micropython = ("ver", "0.2.6", "buff-in", "1024", "h-beat", "10", "dev", "esp32-mpython")
    assert classify(info(*micropython)) is Client.ONE_PER_READ
    assert classify(info(*BLYNK_LIBRARY_PYTHON)) is Client.FRAMED
    # python, but neither library's order: nothing is assumed (paced, no PING)
    assert classify({"dev": "python"}) is Client.UNKNOWN
    assert classify(info("dev", "python", "h-beat", "10", "buff-in", "1024")) is Client.UNKNOWN
    assert classify({"ver": "1.0", "dev": "linux-py"}) is Client.UNKNOWN
    device = logged_in(*ARDUINO)
    assert device.session.client is Client.FRAMED
    device.send(frame(INTERNAL, 3, *BLYNKLIB))  # later info does not reclassify
    device.requests()
    assert device.session.client is Client.FRAMED
    assert device.received() == [(RESPONSE, 3, OK)]
    assert logged_in().session.client is Client.UNKNOWN


# heartbeat ----------------------------------------------------------------------------------
def test_heartbeat_deadline_is_one_and_a_half_beats_after_the_last_bytes() -> None:
    device = logged_in(*OTHER)
    assert device.session.next_deadline() == T0 + 1.5 * HEARTBEAT
    device.now = T0 + 4
    device.send(frame(PING, 5)[:2])  # any bytes count, even part of a frame
    assert device.session.next_deadline() == T0 + 4 + 1.5 * HEARTBEAT
    device.at(T0 + 4 + 1.5 * HEARTBEAT - 0.001)
    assert not device.session.closed
    device.at(T0 + 4 + 1.5 * HEARTBEAT)
    assert device.session.close_reason is CloseReason.HEARTBEAT


def test_a_device_whose_frames_wait_for_the_server_is_not_silent() -> None:
    device = logged_in(*OTHER)
    device.send(frame(HARDWARE, 5, "vw", "1", "1"))
    assert isinstance(device.request(), Write)  # the app layer is slow with it
    device.at(T0 + 1.5 * HEARTBEAT)
    assert not device.session.closed
    assert device.session.next_deadline() == T0 + 3 * HEARTBEAT
    assert device.request() is None  # done; silence counts from the last check
    device.at(T0 + 3 * HEARTBEAT)
    assert device.session.close_reason is CloseReason.HEARTBEAT


# the downlink gate --------------------------------------------------------------------------
def test_nothing_is_sent_between_login_and_the_internal_answer() -> None:
    device = logged_in()
    device.session.send_value("v2", ["12"])
    assert device.received() == []
    device.send(frame(INTERNAL, 2, *ARDUINO))
    device.requests()
    assert device.received() == [(RESPONSE, 2, OK), (HARDWARE, 1, ["vw", "2", "12"])]


def test_the_first_other_frame_opens_the_gate() -> None:
    device = logged_in()
    device.session.send_value("v2", ["12"])
    device.send(frame(PING, 2))
    assert device.requests() == []
    assert device.received() == [(HARDWARE, 1, ["vw", "2", "12"])]
    assert device.at(T0 + PACING_GAP) == [(RESPONSE, 2, OK)]  # no INTERNAL: paced


def test_internal_rtc_does_not_open_the_gate() -> None:
    device = logged_in()
    device.send(frame(INTERNAL, 2, "rtc"))
    assert device.requests() == [Rtc(2)]
    device.session.answer_rtc(2, 5)
    assert device.received() == []


def test_the_gate_opens_after_the_grace() -> None:
    device = logged_in()
    device.session.send_value("v2", ["12"])
    assert device.session.next_deadline() == T0 + HANDSHAKE_GRACE
    assert device.at(T0 + HANDSHAKE_GRACE - 0.001) == []
    assert device.at(T0 + HANDSHAKE_GRACE) == [(HARDWARE, 1, ["vw", "2", "12"])]


# kinds of clients ---------------------------------------------------------------------------
@pytest.mark.parametrize("announced", [ARDUINO, BLYNK_LIBRARY_PYTHON])
def test_framed_client_gets_everything_at_once_and_never_a_ping(
    announced: tuple[str, ...],
) -> None:
    device = logged_in(*announced)
    session = device.session
    session.send_value("v1", ["1"])
    session.send_value("v2", ["2", "3"])
    assert device.received() == [
        (HARDWARE, 1, ["vw", "1", "1"]),
        (HARDWARE, 2, ["vw", "2", "2", "3"]),
    ]
    beat = int(announced[announced.index("h-beat") + 1])
    assert session.next_deadline() == T0 + 1.5 * beat  # nothing else to time: no barrier
    assert device.at(T0 + 1.5 * beat - 0.001) == []  # silent until the heartbeat runs out
    assert not session.closed


def test_unknown_client_is_paced() -> None:
    device = logged_in(*OTHER)
    session = device.session
    for i in range(3):
        session.send_value("v2", [str(i)])
    # the INTERNAL answer went out at T0: the next frame waits for the gap
    assert device.received() == []
    assert session.next_deadline() == pytest.approx(T0 + PACING_GAP)
    assert device.at(T0 + PACING_GAP) == [(HARDWARE, 1, ["vw", "2", "0"])]
    assert device.at(T0 + PACING_GAP * 1.5) == []
    assert session.next_deadline() == pytest.approx(T0 + 2 * PACING_GAP)
    assert device.at(T0 + 2 * PACING_GAP) == [(HARDWARE, 2, ["vw", "2", "1"])]
    assert device.at(T0 + 3 * PACING_GAP) == [(HARDWARE, 3, ["vw", "2", "2"])]
    assert session.next_deadline() == T0 + 1.5 * HEARTBEAT


def test_a_frame_after_an_idle_spell_leaves_at_once() -> None:
    device = logged_in(*OTHER)
    device.now = T0 + 1
    device.session.send_value("v2", ["1"])
    assert device.received() == [(HARDWARE, 1, ["vw", "2", "1"])]


def blynklib() -> Device:
    """A ONE_PER_READ device whose INTERNAL answer just went out (its barrier is up)."""
    device = Device()
    device.login()
    device.send(frame(INTERNAL, 2, *BLYNKLIB))
    assert device.requests() == [Info(dict(zip(BLYNKLIB[::2], BLYNKLIB[1::2], strict=True)))]
    assert device.received() == [(RESPONSE, 2, OK)]
    assert device.session.client is Client.ONE_PER_READ
    return device


def test_one_per_read_client_sends_the_next_frame_only_after_the_pong() -> None:
    device = blynklib()
    session = device.session
    session.send_value("v2", ["1"])
    session.send_value("v2", ["2"])
    assert device.received() == []  # the barrier of the INTERNAL answer
    assert not session.has_output
    assert session.next_deadline() == pytest.approx(T0 + BARRIER_DELAY)
    assert device.at(T0 + BARRIER_DELAY) == [(PING, 3, [])]
    device.now = T0 + 0.002
    device.send(codec.response(3, OK))
    assert session.has_output
    assert device.received() == [(HARDWARE, 1, ["vw", "2", "1"])]
    assert device.at(device.now + BARRIER_DELAY) == [(PING, 4, [])]
    device.send(codec.response(4, OK))
    assert device.received() == [(HARDWARE, 2, ["vw", "2", "2"])]


def test_the_barrier_completes_while_the_app_layer_is_busy() -> None:
    device = blynklib()
    device.send(frame(HARDWARE, 5, "vw", "1", "1"))
    assert isinstance(device.request(), Write)
    device.session.send_value("v2", ["1"])
    assert device.at(T0 + BARRIER_DELAY) == [(PING, 2, [])]
    device.send(codec.response(2, OK))  # PONG while the write is out
    assert device.received() == [(HARDWARE, 1, ["vw", "2", "1"])]


def test_an_answer_to_an_earlier_ping_of_the_barrier_counts() -> None:
    device = blynklib()
    device.session.send_value("v2", ["1"])
    assert device.at(T0 + BARRIER_DELAY) == [(PING, 2, [])]
    assert device.at(T0 + BARRIER_DELAY + BARRIER_RETRY_FIRST) == [(PING, 3, [])]
    device.send(codec.response(2, OK))
    assert device.received() == [(HARDWARE, 1, ["vw", "2", "1"])]


def test_barrier_pings_are_retried_at_doubling_intervals_up_to_the_maximum() -> None:
    device = blynklib()
    device.session.send_value("v2", ["1"])
    t = T0 + BARRIER_DELAY
    pings = []
    delays = []
    while t < T0 + 2.0:
        pings += device.at(t)
        deadline = device.session.next_deadline()
        assert deadline is not None
        delays.append(round(deadline - t, 6))
        t = deadline
    assert all(command == PING for command, _, _ in pings)
    assert delays[:6] == [0.01, 0.02, 0.04, 0.08, 0.16, BARRIER_RETRY_MAX]
    assert set(delays[5:]) == {BARRIER_RETRY_MAX}


def test_a_device_that_never_answers_is_paced_after_the_probation() -> None:
    device = blynklib()
    session = device.session
    session.send_value("v2", ["1"])
    session.send_value("v2", ["2"])
    t = T0 + BARRIER_DELAY
    while t < T0 + BARRIER_PROBATION:
        assert all(command == PING for command, _, _ in device.at(t))
        deadline = session.next_deadline()
        assert deadline is not None
        t = deadline
    device.at(t)  # the first deadline past the probation
    assert session.client is Client.UNKNOWN
    start = device.now
    assert device.received() == []  # the pacing gap first
    assert device.at(start + PACING_GAP) == [(HARDWARE, 1, ["vw", "2", "1"])]
    assert device.at(start + 2 * PACING_GAP) == [(HARDWARE, 2, ["vw", "2", "2"])]


def test_a_device_that_answered_before_is_waited_for_up_to_the_give_up() -> None:
    device = blynklib()
    session = device.session
    assert device.at(T0 + BARRIER_DELAY) == [(PING, 1, [])]
    device.send(codec.response(1, OK))  # it answers: no probation from now on
    device.now = T0 + 1
    session.send_value("v2", ["1"])
    session.send_value("v2", ["2"])
    assert device.received() == [(HARDWARE, 2, ["vw", "2", "1"])]
    start = device.now
    assert device.at(start + BARRIER_PROBATION) == [(PING, 4, [])]
    assert session.client is Client.ONE_PER_READ
    assert device.at(start + BARRIER_GIVE_UP) == [(HARDWARE, 3, ["vw", "2", "2"])]
    assert session.client is Client.ONE_PER_READ


def test_a_barrier_ping_waits_while_the_socket_takes_no_more() -> None:
    device = blynklib()
    session = device.session
    session.send_value("v2", ["1"])
    session.pause_writing()
    assert device.at(T0 + BARRIER_DELAY) == []
    assert session.next_deadline() == T0 + 1.5 * HEARTBEAT
    device.now = T0 + 0.5
    session.resume_writing(device.now)
    assert session.next_deadline() == pytest.approx(T0 + 0.5 + BARRIER_DELAY)
    assert device.at(T0 + 0.5 + BARRIER_DELAY) == [(PING, 2, [])]


def test_queued_frames_wait_while_the_socket_takes_no_more() -> None:
    device = framed()
    session = device.session
    session.pause_writing()
    session.send_value("v2", ["1"])
    assert device.received() == []
    session.resume_writing(device.now)
    assert device.received() == [(HARDWARE, 1, ["vw", "2", "1"])]


# limits -----------------------------------------------------------------------------------
def test_frames_too_large_for_the_device_buffer_are_dropped() -> None:
    device = logged_in("ver", "1.0", "buff-in", "64", "build", "x")
    session = device.session
    assert not session.send_value("v3", ["x" * 54])  # 5 + "vw\0" "3\0" 5 + 54 = 64: too big
    assert session.send_value("v3", ["y" * 53])
    assert device.received() == [(HARDWARE, 2, ["vw", "3", "y" * 53])]  # id 1 was used up


def test_a_device_that_stops_reading_is_closed_at_max_outbox() -> None:
    device = framed()
    session = device.session
    session.pause_writing()
    for i in range(MAX_OUTBOX):
        assert session.send_value("v2", [str(i)])
    assert not session.closed
    assert not session.send_value("v2", ["one more"])
    assert session.close_reason is CloseReason.OUTBOX_FULL
    session.resume_writing(device.now)
    assert device.received() == []


def test_a_closed_session_takes_and_sends_nothing() -> None:
    device = framed()
    session = device.session
    session.close()
    assert session.close_reason is CloseReason.LOCAL
    assert not device.send(frame(PING, 5))
    assert device.request() is None
    assert not session.send_value("v2", ["1"])
    assert device.received() == []
    assert session.next_deadline() is None


# groups, utc, what a device may not send -----------------------------------------------------
GROUP = codec.GROUP
ILLEGAL_BODY = codec.ILLEGAL_COMMAND_BODY


def test_a_timestamped_group_stamps_its_writes() -> None:
    device = framed()
    device.send(
        frame(HARDWARE, 3, "vw", "1", "0"),
        frame(GROUP, 4, "t", "1767225600000"),
        frame(HARDWARE, 5, "vw", "1", "1"),
        frame(HARDWARE, 6, "vw", "2", "2"),
        frame(GROUP, 7, "e"),
        frame(HARDWARE, 8, "vw", "1", "3"),
    )
    assert device.requests() == [
        Write([(3, b"1", ["0"])]),
        Write([(5, b"1", ["1"]), (6, b"2", ["2"])], 1767225600000),
        Write([(8, b"1", ["3"])]),
    ]
    assert device.received() == []  # a group is acknowledged as writes are: not at all


def test_a_group_without_a_timestamp_uses_the_clock_and_a_new_begin_replaces_the_old() -> None:
    device = framed()
    device.send(
        frame(GROUP, 3, "t", "5"),
        frame(GROUP, 4, "b"),
        frame(HARDWARE, 5, "vw", "1", "1"),
        frame(GROUP, 6, "t", "0"),
        frame(HARDWARE, 7, "vw", "1", "2"),
        frame(GROUP, 8, "e"),
        frame(GROUP, 9, "e"),  # an end without a group: harmless
    )
    assert device.requests() == [Write([(5, b"1", ["1"])]), Write([(7, b"1", ["2"])], 0)]
    assert device.received() == []


@pytest.mark.parametrize(
    "fields",
    [
        (),
        ("x",),
        ("t",),
        ("t", ""),
        ("t", "-5"),
        ("t", "1.5"),
        ("t", " 15"),
        ("t", "\u0663"),  # a digit, but not ASCII
        ("t", "9" * 20),
        ("t", str(2**63)),
        ("t", "1", "2"),
        ("b", "1"),
        ("e", "1"),
        (b"\xff",),
    ],
)
def test_a_malformed_group_is_illegal_body_and_its_values_are_refused(
    fields: tuple[str | bytes, ...],
) -> None:
    device = framed()
    device.send(
        frame(GROUP, 3, *fields),
        frame(HARDWARE, 4, "vw", "1", "1"),
        frame(GROUP, 5, "e"),
        frame(HARDWARE, 6, "vw", "1", "2"),
    )
    begins = bool(fields) and fields[0] in ("t", "b")
    expected = [Write([(6, b"1", ["2"])])]
    if not begins:
        expected.insert(0, Write([(4, b"1", ["1"])]))
    assert device.requests() == expected
    answers = [(RESPONSE, 3, ILLEGAL_BODY)] + ([(RESPONSE, 4, ILLEGAL)] if begins else [])
    assert device.received() == answers
    assert device.session.state is State.ACTIVE


def test_utc_requests_become_requests_and_bad_ones_illegal_body() -> None:
    device = framed()
    device.send(
        frame(INTERNAL, 3, "utc", "tz_name"),
        frame(INTERNAL, 4, "utc"),
        frame(INTERNAL, 5, "utc", "time", "extra"),
        frame(INTERNAL, 6, "utc", b"\xff"),
        frame(INTERNAL, 7, "utc", "a\x01b"),
        frame(INTERNAL, 8, "utc", "dst_next"),
    )
    assert device.requests() == [Utc(3, "tz_name"), Utc(8, "dst_next")]
    assert device.received() == [(RESPONSE, i, ILLEGAL_BODY) for i in (4, 5, 6, 7)]
    device.session.answer_utc(3, ["tz_name", "Europe/Kyiv"])
    device.session.answer_utc(8, ["dst_next"])
    assert device.received() == [
        (INTERNAL, 3, ["utc", "tz_name", "Europe/Kyiv"]),
        (INTERNAL, 8, ["utc", "dst_next"]),
    ]


def test_utc_info_does_not_configure_or_classify() -> None:
    device = logged_in()
    device.send(frame(INTERNAL, 2, "utc", "time"))
    assert device.requests() == [Utc(2, "time")]
    assert device.session.client is Client.UNKNOWN
    assert device.session.heartbeat_deadline == T0 + 1.5 * HEARTBEAT


@pytest.mark.parametrize("command", [1, 12, 13, 14, 15, 18, 41, 55, 63, 66, 99, 255])
def test_commands_the_server_does_not_take_are_illegal_and_harmless(command: int) -> None:
    device = framed()
    device.send(frame(command, 3, "x"), frame(HARDWARE, 4, "vw", "1", "1"))
    assert device.requests() == [Write([(4, b"1", ["1"])])]
    assert device.received() == [(RESPONSE, 3, ILLEGAL)]
    assert device.session.state is State.ACTIVE


@pytest.mark.parametrize("beat", ["\u00b2", "\u0663\u0660"])
def test_a_heartbeat_in_other_digits_is_ignored(beat: str) -> None:
    device = logged_in("h-beat", beat, "buff-in", "\u00b2")
    assert device.session.heartbeat_deadline == T0 + 1.5 * HEARTBEAT


def test_meta_requests_become_requests_and_bad_ones_illegal_body() -> None:
    device = framed()
    device.send(
        frame(INTERNAL, 3, "meta", "get", "Serial Number"),
        frame(INTERNAL, 4, "meta", "set", "Site", "North"),
        frame(INTERNAL, 5, "meta", "get"),
        frame(INTERNAL, 6, "meta", "set", "Site"),
        frame(INTERNAL, 7, "meta", "drop", "Site"),
        frame(INTERNAL, 8, "meta", "get", b"\xff"),
    )
    assert device.requests() == [Meta(3, "Serial Number", None), Meta(4, "Site", "North")]
    assert device.received() == [(RESPONSE, i, ILLEGAL_BODY) for i in (5, 6, 7, 8)]
    device.session.answer_meta(3, "Serial Number", "WS-0001")
    device.session.answer_ok(4)
    assert device.received() == [
        (INTERNAL, 3, ["meta", "Serial Number", "WS-0001"]),
        (RESPONSE, 4, codec.OK),
    ]


# device events: EVENT_LOG (64) and EVENT_CLEAR (65) ----------------------------------------------

EVENT_LOG, EVENT_CLEAR, ILLEGAL_BODY_STATUS = 64, 65, codec.ILLEGAL_COMMAND_BODY


def test_event_log_frames_become_requests() -> None:
    device = framed()
    device.send(
        frame(EVENT_LOG, 3, "high_temp", "41.5 \u00b0C"),
        frame(EVENT_LOG, 4, "door_open"),
        frame(EVENT_CLEAR, 5, "high_temp"),
    )
    assert device.requests() == [
        LogEvent(3, "high_temp", "41.5 \u00b0C"),
        LogEvent(4, "door_open", None),
        ResolveEvent(5, "high_temp"),
    ]
    device.session.acknowledge(3)
    device.session.limit_reached(4)
    device.session.refuse_body(5)
    assert device.received() == [
        (RESPONSE, 3, OK),
        (RESPONSE, 4, QUOTA_LIMIT),
        (RESPONSE, 5, ILLEGAL_BODY_STATUS),
    ]


def test_every_event_over_the_limit_is_answered() -> None:
    device = framed()
    device.send(frame(EVENT_LOG, 3, "a"), frame(EVENT_LOG, 4, "a"))
    assert device.requests() == [LogEvent(3, "a", None), LogEvent(4, "a", None)]
    device.session.limit_reached(3)
    device.session.limit_reached(4)  # not throttled like the values' quota warning
    assert device.received() == [(RESPONSE, 3, QUOTA_LIMIT), (RESPONSE, 4, QUOTA_LIMIT)]


@pytest.mark.parametrize(
    "command, fields",
    [
        (EVENT_LOG, ()),
        (EVENT_LOG, ("",)),
        (EVENT_LOG, ("", "description")),
        (EVENT_LOG, ("a", "b", "c")),
        (EVENT_LOG, (b"\xff\xfe",)),
        (EVENT_LOG, ("a", b"\xff")),
        (EVENT_CLEAR, ()),
        (EVENT_CLEAR, ("a", "b")),
    ],
)
def test_malformed_event_frames_are_illegal_bodies(
    command: int, fields: tuple[str | bytes, ...]
) -> None:
    device = framed()
    device.send(frame(command, 3, *fields), frame(HARDWARE, 4, "vw", "1", "1"))
    assert device.requests() == [Write([(4, b"1", ["1"])])]
    assert device.received() == [(RESPONSE, 3, ILLEGAL_BODY_STATUS)]
    assert device.session.state is State.ACTIVE
