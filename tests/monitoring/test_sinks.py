"""Alert sinks against real receivers: an HTTP server on 127.0.0.1 for the webhook, aiosmtpd
(with STARTTLS from a throwaway CA) for email, and the logging system for the log sink."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from nexml_ext.errors import DeliveryFailed, InvalidInput
from nexml_ext.monitoring.sinks import (
    ALERT_LOGGER,
    SIGNATURE_HEADER,
    deliver,
    validate_sink,
    verify_signature,
)
from tests.api.serving import free_port

SECRET = "whsec-Zq81-do-not-leak"
PASSWORD = "smtp-pw-77-do-not-leak"
ALERT = {
    "id": 42,
    "kind": "performance",
    "severity": "critical",
    "deployment": "credit-prod",
    "model": "credit:3",
    "metric": "auc",
    "feature": "",
    "value": 0.6123,
    "threshold": 0.7,
    "window": "weekly",
    "window_start": "2026-03-02T00:00:00",
    "message": "credit-prod: auc 0.6123 is below the threshold 0.7",
}


# --------------------------------------------------------------------------- webhook


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers the scripted statuses
    (then 200)."""

    def __init__(self, statuses=()):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0KEN-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_webhook_posts_the_signed_alert(monkeypatch):
    monkeypatch.setenv("NEXML_TEST_HOOK_SECRET", SECRET)
    with Receiver() as receiver:
        config = validate_sink(
            "webhook", {"url": receiver.url, "secret_env": "NEXML_TEST_HOOK_SECRET"}
        )
        assert config == {
            "url": receiver.url,
            "secret_env": "NEXML_TEST_HOOK_SECRET",
            "timeout": 5.0,
            "retries": 2,
            "backoff": 0.5,
        }
        json.dumps(config)  # storable as it is
        deliver("webhook", config, ALERT)
    [(path, headers, body)] = receiver.requests
    assert path == "/hooks/T0KEN-path"
    assert json.loads(body) == ALERT
    assert headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert verify_signature(body, headers[SIGNATURE_HEADER], SECRET)
    assert not verify_signature(body + b" ", headers[SIGNATURE_HEADER], SECRET)
    assert SECRET not in json.dumps(config)


def test_webhook_retries_server_errors_but_not_refusals():
    config = {"url": None, "retries": 2, "backoff": 0}
    with Receiver(statuses=[503, 500]) as receiver:
        deliver("webhook", {**config, "url": receiver.url}, ALERT)  # third attempt succeeds
    assert len(receiver.requests) == 3
    assert SIGNATURE_HEADER not in receiver.requests[0][1]  # no secret configured: unsigned
    with Receiver(statuses=[400]) as receiver, pytest.raises(DeliveryFailed) as caught:
        deliver("webhook", {**config, "url": receiver.url}, ALERT)
    assert len(receiver.requests) == 1
    port = receiver.server.server_address[1]
    assert str(caught.value) == (
        f"webhook to http://127.0.0.1:{port} failed after 1 attempt: HTTP 400 Bad Request"
    )
    with Receiver(statuses=[502, 502, 502]) as receiver, pytest.raises(DeliveryFailed) as caught:
        deliver("webhook", {**config, "url": receiver.url}, ALERT)
    assert len(receiver.requests) == 3 and "after 3 attempts: HTTP 502" in str(caught.value)


def test_unreachable_webhook_fails_in_one_line_without_secrets(monkeypatch, caplog):
    monkeypatch.setenv("NEXML_TEST_HOOK_SECRET", SECRET)
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/hooks/T0KEN-path?sig={SECRET}"
    config = {"url": url, "secret_env": "NEXML_TEST_HOOK_SECRET", "retries": 1, "backoff": 0}
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryFailed) as caught:
        deliver("webhook", config, ALERT)
    message = str(caught.value)
    assert message.startswith(f"webhook to http://127.0.0.1:{port} failed after 2 attempts: ")
    assert "ConnectError" in message and "\n" not in message
    assert SECRET not in message and "T0KEN" not in message
    assert SECRET not in caplog.text


def test_webhook_secret_variable_must_be_set(monkeypatch):
    monkeypatch.delenv("NEXML_TEST_UNSET_SECRET", raising=False)
    config = {"url": "https://hooks.example.com/x", "secret_env": "NEXML_TEST_UNSET_SECRET"}
    with pytest.raises(
        DeliveryFailed, match="environment variable NEXML_TEST_UNSET_SECRET is not set"
    ):
        deliver("webhook", config, ALERT)


# --------------------------------------------------------------------------- email


class Mailbox:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A throwaway CA (its PEM on disk) and a server context with a certificate for 127.0.0.1."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


@pytest.fixture
def smtp(tls):
    """An SMTP server on 127.0.0.1 that requires STARTTLS before AUTH; user alerts, PASSWORD."""
    mailbox = Mailbox()
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"alerts" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls[0],
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield controller, mailbox, logins
    finally:
        controller.stop()


def email_config(controller, ca_file, **extra):
    return {
        "host": "127.0.0.1",
        "port": controller.port,
        "from": "nexml <monitor@bank.example>",
        "to": ["risk@bank.example", "mrm@bank.example"],
        "starttls": True,
        "ca_file": ca_file,
        "user": "alerts",
        "password_env": "NEXML_TEST_SMTP_PASSWORD",
        **extra,
    }


def test_email_is_delivered_over_starttls_with_the_right_headers(smtp, tls, monkeypatch):
    controller, mailbox, logins = smtp
    monkeypatch.setenv("NEXML_TEST_SMTP_PASSWORD", PASSWORD)
    config = validate_sink("email", email_config(controller, tls[1]))
    assert config["port"] == controller.port and config["ssl"] is False
    assert PASSWORD not in json.dumps(config)
    deliver("email", config, ALERT)
    [envelope] = mailbox.envelopes
    assert logins == [(b"alerts", PASSWORD.encode())]
    assert envelope.mail_from == "monitor@bank.example"
    assert envelope.rcpt_tos == ["risk@bank.example", "mrm@bank.example"]
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert message["From"] == "nexml <monitor@bank.example>"
    assert message["To"] == "risk@bank.example, mrm@bank.example"
    assert message["Subject"] == (
        "[nexml] critical: credit-prod auc 0.6123 (threshold 0.7, window weekly from "
        "2026-03-02T00:00:00)"
    )
    body = message.get_content()
    for line in [
        "Deployment: credit-prod",
        "Metric:     auc",
        "Value:      0.6123",
        "Threshold:  0.7",
        "Window:     weekly from 2026-03-02T00:00:00",
        "Model:      credit:3",
    ]:
        assert line in body
    assert PASSWORD not in envelope.original_content.decode()


def test_email_failures_are_one_line_without_the_password(smtp, tls, monkeypatch):
    controller, mailbox, _ = smtp
    monkeypatch.setenv("NEXML_TEST_SMTP_PASSWORD", "wrong-" + PASSWORD)
    with pytest.raises(DeliveryFailed) as caught:
        deliver("email", email_config(controller, tls[1]), ALERT)
    assert str(caught.value) == (
        f"email via 127.0.0.1:{controller.port} failed: the server refused the login of user "
        "alerts (535)"
    )
    # without STARTTLS the server refuses the mail (it requires TLS first)
    monkeypatch.setenv("NEXML_TEST_SMTP_PASSWORD", PASSWORD)
    plain = email_config(controller, tls[1], starttls=False, user=None, password_env=None)
    with pytest.raises(DeliveryFailed) as caught:
        deliver("email", plain, ALERT)
    assert str(caught.value) == (
        f"email via 127.0.0.1:{controller.port} failed: SMTPSenderRefused: 530 Must issue a "
        "STARTTLS command first"
    )
    with pytest.raises(DeliveryFailed, match="cannot load ca_file: FileNotFoundError"):
        deliver("email", email_config(controller, "/nonexistent/ca.pem"), ALERT)
    # an unknown CA: the certificate is not trusted
    with pytest.raises(DeliveryFailed, match="SSLCertVerificationError"):
        deliver("email", email_config(controller, None), ALERT)
    assert mailbox.envelopes == []


# --------------------------------------------------------------------------- log


def test_log_sink_warns_on_the_alerts_logger(caplog):
    assert validate_sink("log", None) == {} == validate_sink("log", {})
    with caplog.at_level(logging.WARNING, logger=ALERT_LOGGER):
        deliver("log", {}, ALERT)
    [record] = caplog.records
    assert record.name == "nexml_ext.alerts" and record.levelno == logging.WARNING
    assert record.getMessage() == (
        "critical alert: credit-prod auc 0.6123 (threshold 0.7, window weekly from "
        "2026-03-02T00:00:00)"
    )
    assert record.alert == ALERT


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("pager", {}, "unknown alert sink kind 'pager': choose webhook, email or log"),
        ("webhook", {}, "webhook sink: url is required"),
        (
            "webhook",
            {"url": "ftp://files.example.com/x"},
            "url must be http or https, not scheme 'ftp'",
        ),
        ("webhook", {"url": "file:///etc/passwd"}, "not scheme 'file'"),
        ("webhook", {"url": "https://"}, "webhook sink: url has no host"),
        ("webhook", {"url": "https://u:p@hooks.example.com"}, "must not carry user:password"),
        (
            "webhook",
            {"url": "https://h.example.com", "secret": "x"},
            "field 'secret' refused: never store a secret",
        ),
        (
            "webhook",
            {"url": "https://h.example.com", "secret_env": "abc-def"},
            "secret_env must be the name of an environment variable",
        ),
        (
            "webhook",
            {"url": "https://h.example.com", "timeout": 0},
            "timeout must be a number of seconds > 0",
        ),
        (
            "webhook",
            {"url": "https://h.example.com", "retries": 9},
            "retries must be a whole number from 0 to 5",
        ),
        (
            "webhook",
            {"url": "https://h.example.com", "backoff": -1},
            "backoff must be a number of seconds >= 0",
        ),
        (
            "webhook",
            {"url": "https://h.example.com", "colour": "red"},
            "unknown field 'colour' (allowed: url, secret_env",
        ),
        ("email", {"from": "a@b.example", "to": ["c@d.example"]}, "email sink: host is required"),
        (
            "email",
            {"host": "smtp", "to": ["c@d.example"]},
            "email sink: from must be an email address",
        ),
        (
            "email",
            {"host": "smtp", "from": "a@b.example", "to": []},
            "to must name at least one address",
        ),
        (
            "email",
            {"host": "smtp", "from": "a@b.example", "to": ["x\r\nBcc: e@f.example"]},
            "to must be an email address",
        ),
        (
            "email",
            {"host": "smtp", "from": "a@b.example", "to": "nobody"},
            "to address 'nobody' is not an email address",
        ),
        (
            "email",
            {"host": "smtp", "from": "a@b.example", "to": "c@d.example", "port": 70000},
            "port must be a whole number from 1 to 65535",
        ),
        (
            "email",
            {"host": "smtp", "from": "a@b.example", "to": "c@d.example", "starttls": "yes"},
            "starttls must be true or false",
        ),
        (
            "email",
            {
                "host": "smtp",
                "from": "a@b.example",
                "to": "c@d.example",
                "starttls": True,
                "ssl": True,
            },
            "choose starttls or ssl, not both",
        ),
        (
            "email",
            {"host": "smtp", "from": "a@b.example", "to": "c@d.example", "user": "u"},
            "user and password_env go together",
        ),
        (
            "email",
            {"host": "smtp", "from": "a@b.example", "to": "c@d.example", "password": "pw"},
            "field 'password' refused",
        ),
        ("log", {"level": "info"}, "log sink: unknown field 'level' (allowed: none)"),
    ],
)
def test_bad_configs_are_refused(kind, config, message):
    with pytest.raises(InvalidInput) as caught:
        validate_sink(kind, config)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    for value in ("pw", "x\r\n"):
        if value in config.values():
            assert repr(value) not in str(caught.value)


def test_defaults_and_bad_alerts():
    config = validate_sink(
        "email", {"host": "smtp", "from": "a@b.example", "to": "c@d.example", "ssl": True}
    )
    assert config["port"] == 465 and config["to"] == ["c@d.example"] and config["user"] is None
    assert (
        validate_sink("email", {**config, "ssl": False, "starttls": True, "port": 587})["port"]
        == 587
    )
    with pytest.raises(InvalidInput, match="alert lacks threshold, window"):
        deliver("log", {}, {"deployment": "d", "metric": "auc", "value": 0.5})
