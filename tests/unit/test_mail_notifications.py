"""E-mail notifications without I/O: the stored settings read defensively, the recipients, the
mail's text, and the SMTP URL."""

from __future__ import annotations

import pytest

from pinbase.app.mail_delivery import message, parse_smtp_url
from pinbase.domain.notifications import (
    DEFAULT_PERIOD_S,
    MIN_PERIOD_S,
    NotifySettings,
    compose,
    parse_notify,
    recipients,
)


def test_settings_are_read_defensively() -> None:
    assert parse_notify('{"email":["owner","a@b.test"],"period":300}') == NotifySettings(
        ("owner", "a@b.test"), 300
    )
    assert parse_notify('{"email":["a@b.test"]}') == NotifySettings(("a@b.test",), DEFAULT_PERIOD_S)
    assert parse_notify('{"email":["a@b.test"],"period":0}') == NotifySettings(
        ("a@b.test",), MIN_PERIOD_S
    )
    for bad in (None, "", "nope", "[]", '{"email":"a@b.test"}', '{"email":[1]}',
                '{"email":["a@b.test"],"period":"5"}', '{"email":["a@b.test"],"period":true}',
                '{"email":["x\\r\\nBcc: c@d.test"]}', '{"email":[]}'):  # fmt: skip
        assert parse_notify(bad) is None, bad


def test_recipients_resolve_the_owner_once() -> None:
    settings = NotifySettings(("owner", "a@b.test", "owner", "a@b.test"), 60)
    assert recipients(settings, "o@b.test") == ["o@b.test", "a@b.test"]
    assert recipients(settings, None) == ["a@b.test"]
    assert recipients(NotifySettings(("owner",), 60), None) == []


def test_the_mail_names_the_event_and_device_on_one_subject_line() -> None:
    subject, body = compose("Roof\r\nBcc: x@y.test", "Hot", "hot", None, 0)
    assert subject == "Hot on Roof Bcc: x@y.test"
    assert body == (
        "Device: Roof\r\nBcc: x@y.test\nEvent: Hot (hot)\nTime: 1970-01-01 00:00:00 UTC\n"
        "Description: -\n"
    )


def test_smtp_urls() -> None:
    server = parse_smtp_url("smtp://u%40x:p%3Aw@mail.test", "me@x.test")
    assert (server.implicit_tls, server.host, server.port) == (False, "mail.test", 25)
    assert (server.username, server.password) == ("u@x", "p:w") and "p:w" not in repr(server)
    assert parse_smtp_url("smtps://mail.test:2465", "me@x.test").port == 2465
    assert parse_smtp_url("smtps://mail.test", "me@x.test").port == 465
    for bad in ("http://mail.test", "smtp://", "smtp://u:secret@mail.test:99999", "mail.test"):
        with pytest.raises(ValueError) as caught:
            parse_smtp_url(bad, "me@x.test")
        assert "secret" not in str(caught.value)


def test_an_unusable_outbox_row_is_refused() -> None:
    server = parse_smtp_url("smtp://mail.test", "me@x.test")
    for context in ("nope", "{}", '{"to": [], "subject": "s", "body": "b"}',
                    '{"to": "a@b.test", "subject": "s", "body": "b"}'):  # fmt: skip
        with pytest.raises((ValueError, KeyError, TypeError)):
            message(server, context)
    mail = message(server, '{"to": ["a@b.test"], "subject": "s", "body": "b"}')
    assert (mail["From"], mail["To"], mail["Subject"]) == ("me@x.test", "a@b.test", "s")
