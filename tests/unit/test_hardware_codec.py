"""The Blynk hardware protocol framing, without sockets."""

from __future__ import annotations

import struct

import pytest

from pinbase.devices.hardware import codec as codec
from pinbase.devices.hardware.codec import CodecError, Frame, FrameDecoder, MessageIds


def raw(command: int, msg_id: int, body: bytes = b"") -> bytes:
    return struct.pack("!BHH", command, msg_id, len(body)) + body


def test_one_frame_in_one_feed() -> None:
    frames = FrameDecoder().feed(raw(codec.HARDWARE, 7, b"vw\x001\x0023.5"))
    assert frames == [Frame(codec.HARDWARE, 7, b"vw\x001\x0023.5")]
    assert frames[0].fields() == [b"vw", b"1", b"23.5"]


def test_several_frames_in_one_feed() -> None:
    data = raw(codec.LOGIN, 1, b"t" * 32) + raw(codec.PING, 2) + raw(codec.HARDWARE, 3, b"vr\x002")
    frames = FrameDecoder().feed(data)
    assert [(f.command, f.msg_id) for f in frames] == [
        (codec.LOGIN, 1),
        (codec.PING, 2),
        (codec.HARDWARE, 3),
    ]
    assert frames[1].body == b"" and frames[1].fields() == []


def test_frames_split_across_feeds_byte_by_byte() -> None:
    data = raw(codec.HARDWARE, 1, b"vw\x001\x001") + raw(codec.INTERNAL, 2, b"h-beat\x0010")
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += decoder.feed(data[i : i + 1])
    assert frames == [
        Frame(codec.HARDWARE, 1, b"vw\x001\x001"),
        Frame(codec.INTERNAL, 2, b"h-beat\x0010"),
    ]
    assert decoder.pending == 0


def test_split_inside_header_and_body_then_more_frames() -> None:
    first, second = raw(codec.HARDWARE, 9, b"vw\x004\x001.5\x002.5"), raw(codec.PING, 10)
    decoder = FrameDecoder()
    assert decoder.feed(first[:3]) == []
    assert decoder.feed(first[3:8]) == []
    assert decoder.pending == 8
    frames = decoder.feed(first[8:] + second + second[:2])
    assert [f.msg_id for f in frames] == [9, 10]
    assert decoder.pending == 2


def test_response_carries_status_in_the_length_field() -> None:
    data = codec.response(5, codec.OK) + codec.response(6, codec.INVALID_TOKEN)
    assert FrameDecoder().feed(data) == [
        Frame(codec.RESPONSE, 5, b"", codec.OK),
        Frame(codec.RESPONSE, 6, b"", codec.INVALID_TOKEN),
    ]


def test_blynklib_ping_answer_with_text_status_is_status_200() -> None:
    # blynklib 0.2.x packs its RESPONSE to a PING as a body "200" with length 3.
    quirky = struct.pack("!BHH", codec.RESPONSE, 4, 3) + b"200"
    decoder = FrameDecoder()
    assert decoder.feed(quirky[:6]) == []
    assert decoder.feed(quirky[6:] + raw(codec.PING, 5)) == [
        Frame(codec.RESPONSE, 4, b"", codec.OK),
        Frame(codec.PING, 5, b""),
    ]


def test_message_id_zero_is_malformed() -> None:
    with pytest.raises(CodecError):
        FrameDecoder().feed(raw(codec.PING, 0))
    with pytest.raises(CodecError):
        FrameDecoder().feed(codec.response(1, 200) + struct.pack("!BHH", codec.RESPONSE, 0, 200))


def test_oversized_body_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_body=1024)
    assert decoder.feed(raw(codec.HARDWARE, 1, b"x" * 1024))[0].body == b"x" * 1024
    with pytest.raises(CodecError):
        decoder.feed(struct.pack("!BHH", codec.HARDWARE, 2, 1025))
    with pytest.raises(CodecError):
        FrameDecoder().feed(struct.pack("!BHH", codec.HARDWARE, 2, 0xFFFF))


def test_unknown_commands_decode_like_any_other() -> None:
    assert FrameDecoder().feed(raw(250, 3, b"abc")) == [Frame(250, 3, b"abc")]


def test_message_ids_wrap_past_65535_without_zero() -> None:
    ids = MessageIds()
    seen = [ids.next() for _ in range(65535 * 2 + 3)]
    assert seen[:3] == [1, 2, 3]
    assert seen[65533:65538] == [65534, 65535, 1, 2, 3]
    assert 0 not in seen and max(seen) == 65535


def test_builders() -> None:
    assert codec.response(0x1234, 200) == b"\x00\x12\x34\x00\xc8"
    assert codec.ping(1) == b"\x06\x00\x01\x00\x00"
    frame = codec.hardware_write(3, "2", ["1.5", "2.5"])
    assert frame == raw(codec.HARDWARE, 3, b"vw\x002\x001.5\x002.5")
    assert codec.message(codec.INTERNAL, 5, ("rtc", "17")) == raw(codec.INTERNAL, 5, b"rtc\x0017")
    assert codec.message(codec.HARDWARE, 6, ("vw", "1", "héllo")).endswith("héllo".encode())
    with pytest.raises(CodecError):
        codec.message(codec.HARDWARE, 7, ["x" * 70_000])


def test_bare_pins_and_internal_info() -> None:
    assert [codec.bare_pin(p) for p in ("v2", "V13", "7")] == ["2", "13", "7"]
    fields = b"ver\x000.2.6\x00buff-in\x00512\x00h-beat\x0010\x00dev\x00python\x00".split(b"\0")
    assert codec.key_values(fields) == {
        "ver": "0.2.6",
        "buff-in": "512",
        "h-beat": "10",
        "dev": "python",
    }


def test_frames_are_decoded_as_many_at_a_time_as_asked() -> None:
    decoder = FrameDecoder()
    data = b"".join(raw(codec.PING, i) for i in range(1, 11))
    assert [f.msg_id for f in decoder.feed(data, max_frames=4)] == [1, 2, 3, 4]
    assert decoder.more and decoder.pending == 30
    assert [f.msg_id for f in decoder.feed(b"", max_frames=4)] == [5, 6, 7, 8]
    assert [f.msg_id for f in decoder.feed(raw(codec.PING, 11)[:3], max_frames=4)] == [9, 10]
    assert not decoder.more  # stopped at a partial frame, not at the limit
    assert [f.msg_id for f in decoder.feed(raw(codec.PING, 11)[3:])] == [11]


def test_a_byte_limit_stops_at_the_first_frame_starting_past_it() -> None:
    decoder = FrameDecoder()
    data = b"".join(raw(codec.HARDWARE, i, b"x" * 95) for i in range(1, 6))  # 100 bytes each
    assert [f.msg_id for f in decoder.feed(data, max_bytes=150)] == [1, 2]
    assert decoder.more
    assert [f.msg_id for f in decoder.feed(b"", max_bytes=1)] == [3]  # at least one frame
    assert [f.msg_id for f in decoder.feed(b"")] == [4, 5]
    assert not decoder.more and decoder.pending == 0
