"""Alert delivery: webhook (HTTP POST), email (SMTP) and log.

Two functions make the interface; both are pure of the database and the principal:

- ``validate_sink(kind, config) -> dict``: the normalised configuration to store (defaults
  filled in, every field checked). Raises ``InvalidInput`` naming the bad field. A field that
  would hold a secret (``secret``, ``password``, ``token``...) is refused: a sink names the
  environment variable that holds its secret (``secret_env``, ``password_env``), and the secret
  is read at delivery time, used, and never stored, logged or put into an error message.
- ``deliver(kind, config, alert) -> None``: sends one alert. ``alert`` is a JSON-able dict with
  at least ``deployment``, ``metric``, ``value``, ``threshold`` and ``window`` (any other keys
  are passed on: ``window_start``, ``severity``, ``message``, ``model``, ``id``...). Raises
  ``DeliveryFailed`` with a one-line reason, or ``InvalidInput`` for a bad config or alert.

Kinds and their configuration fields:

``webhook``
    ``url`` (http or https, no user:password in it), ``secret_env`` (optional: the environment
    variable holding the HMAC key), ``timeout`` (seconds per attempt, default 5, at most 60),
    ``retries`` (after the first attempt, default 2, at most 5), ``backoff`` (seconds before the
    first retry, doubled each time and capped at 30; default 0.5). The body is the alert as
    compact JSON with sorted keys; with a secret, header ``X-Nexml-Signature`` carries
    ``sha256=<hex HMAC-SHA256 of the exact body bytes>``. A 2xx answer is success; connection
    errors, timeouts, 429 and 5xx are retried; other answers (4xx, redirects) fail at once.
    Errors name the scheme, host and port only: the path of a webhook URL is often a token.
``email``
    ``host``, ``port`` (default 465 with ``ssl``, 587 with ``starttls``, else 25), ``from``,
    ``to`` (a list of addresses, or one), ``starttls`` / ``ssl`` (booleans, not both),
    ``user`` with ``password_env`` (together or neither), ``ca_file`` (optional CA bundle to
    trust for TLS instead of the system's), ``timeout`` (default 10). Subject and plain-text body
    name the deployment, metric, value, threshold and window.
``log``
    no fields: a WARNING on logger ``nexml_ext.alerts`` with the alert in ``record.alert``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import smtplib
import ssl
import time
from collections.abc import Mapping
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import __version__
from ..errors import DeliveryFailed, InvalidInput

__all__ = [
    "ALERT_FIELDS",
    "ALERT_LOGGER",
    "SIGNATURE_HEADER",
    "SINK_KINDS",
    "alert_json",
    "alert_text",
    "deliver",
    "sign",
    "validate_sink",
    "verify_signature",
]

SINK_KINDS = ("webhook", "email", "log")
ALERT_FIELDS = ("deployment", "metric", "value", "threshold", "window")
ALERT_LOGGER = "nexml_ext.alerts"
SIGNATURE_HEADER = "X-Nexml-Signature"
MAX_TIMEOUT = 60.0
MAX_RETRIES = 5
MAX_BACKOFF = 30.0

_FIELDS = {
    "webhook": ("url", "secret_env", "timeout", "retries", "backoff"),
    "email": (
        "host",
        "port",
        "from",
        "to",
        "starttls",
        "ssl",
        "user",
        "password_env",
        "ca_file",
        "timeout",
    ),
    "log": (),
}
_SECRET_WORDS = ("secret", "password", "passwd", "token", "api_key", "apikey", "key", "credential")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ADDRESS = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
log = logging.getLogger(ALERT_LOGGER)


# --------------------------------------------------------------------------- validation


def validate_sink(kind: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The normalised, storable configuration of a sink of ``kind``; InvalidInput names the
    bad field (and never echoes a value that could be a secret)."""
    if kind not in SINK_KINDS:
        raise InvalidInput(f"unknown alert sink kind {kind!r}: choose webhook, email or log")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise InvalidInput(f"{kind} sink: the configuration must be a mapping of fields")
    for field in config:
        if not isinstance(field, str):
            raise InvalidInput(f"{kind} sink: field names must be strings, got {field!r}")
        if field not in _FIELDS[kind]:
            if not field.endswith("_env") and any(w in field.lower() for w in _SECRET_WORDS):
                raise InvalidInput(
                    f"{kind} sink: field {field!r} refused: never store a secret in a sink; put "
                    "it in an environment variable and name that variable "
                    f"({'secret_env' if kind == 'webhook' else 'password_env'})"
                )
            allowed = ", ".join(_FIELDS[kind]) or "none"
            raise InvalidInput(f"{kind} sink: unknown field {field!r} (allowed: {allowed})")
    if kind == "webhook":
        return _webhook_config(config)
    if kind == "email":
        return _email_config(config)
    return {}


def _webhook_config(config: Mapping[str, Any]) -> dict[str, Any]:
    url = config.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("webhook sink: url is required (an http or https URL)")
    url = url.strip()
    if _CONTROL.search(url) or " " in url:
        raise InvalidInput("webhook sink: url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidInput(f"webhook sink: url is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "none"
        raise InvalidInput(f"webhook sink: url must be http or https, not scheme {shown!r}")
    if not parts.hostname:
        raise InvalidInput("webhook sink: url has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "webhook sink: url must not carry user:password; sign with secret_env instead"
        )
    return {
        "url": url,
        "secret_env": _env_name("webhook", "secret_env", config.get("secret_env")),
        "timeout": _number("webhook", "timeout", config.get("timeout", 5.0), 0, MAX_TIMEOUT),
        "retries": _whole("webhook", "retries", config.get("retries", 2), 0, MAX_RETRIES),
        "backoff": _number("webhook", "backoff", config.get("backoff", 0.5), 0, MAX_BACKOFF, True),
    }


def _email_config(config: Mapping[str, Any]) -> dict[str, Any]:
    host = config.get("host")
    if not isinstance(host, str) or not host.strip() or re.search(r"[\s\x00-\x1f]", host.strip()):
        raise InvalidInput("email sink: host is required (an SMTP server name, no spaces)")
    starttls = _flag("starttls", config.get("starttls", False))
    implicit_tls = _flag("ssl", config.get("ssl", False))
    if starttls and implicit_tls:
        raise InvalidInput("email sink: choose starttls or ssl, not both")
    default_port = 465 if implicit_tls else 587 if starttls else 25
    port = _whole("email", "port", config.get("port", default_port), 1, 65535)
    sender = _address("from", config.get("from"))
    to = config.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list | tuple) or not to:
        raise InvalidInput("email sink: to must name at least one address")
    recipients = [_address("to", a) for a in to]
    user = config.get("user")
    password_env = _env_name("email", "password_env", config.get("password_env"))
    if user is not None and (not isinstance(user, str) or not user or _CONTROL.search(user)):
        raise InvalidInput("email sink: user must be a non-empty user name")
    if (user is None) != (password_env is None):
        raise InvalidInput("email sink: user and password_env go together (both or neither)")
    ca_file = config.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        raise InvalidInput("email sink: ca_file must be the path of a CA bundle")
    return {
        "host": host.strip(),
        "port": port,
        "from": sender,
        "to": recipients,
        "starttls": starttls,
        "ssl": implicit_tls,
        "user": user,
        "password_env": password_env,
        "ca_file": ca_file,
        "timeout": _number("email", "timeout", config.get("timeout", 10.0), 0, MAX_TIMEOUT),
    }


def _env_name(kind: str, field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise InvalidInput(
            f"{kind} sink: {field} must be the name of an environment variable "
            "(letters, digits, underscores), not its value"
        )
    return value


def _number(kind: str, field: str, value: Any, low: float, high: float, zero: bool = False):
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low <= value <= high) or (value == low and not zero):
        bound = f"{'>=' if zero else '>'} {low:g} and <= {high:g}"
        raise InvalidInput(f"{kind} sink: {field} must be a number of seconds {bound}")
    return float(value)


def _whole(kind: str, field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{kind} sink: {field} must be a whole number from {low} to {high}")
    return value


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"email sink: {field} must be true or false")
    return value


def _address(field: str, value: Any) -> str:
    if not isinstance(value, str) or _CONTROL.search(value):
        raise InvalidInput(f"email sink: {field} must be an email address")
    _, address = parseaddr(value)
    if not _ADDRESS.fullmatch(address):
        raise InvalidInput(f"email sink: {field} address {value!r} is not an email address")
    return value.strip()


# --------------------------------------------------------------------------- the alert


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def alert_json(alert: Mapping[str, Any]) -> bytes:
    """The webhook body: compact JSON, sorted keys, UTF-8 (the bytes that are signed)."""
    return json.dumps(
        dict(alert),
        sort_keys=True,
        separators=(",", ":"),
        default=_json_default,
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def _check_alert(alert: Any) -> Mapping[str, Any]:
    if not isinstance(alert, Mapping):
        raise InvalidInput("an alert must be a mapping of fields")
    missing = [f for f in ALERT_FIELDS if f not in alert]
    if missing:
        raise InvalidInput(f"alert lacks {', '.join(missing)}")
    return alert


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _CONTROL.sub(" ", str(value)).strip()


def _window(alert: Mapping[str, Any]) -> str:
    window = alert["window"]
    if isinstance(window, Mapping):
        text = " ".join(_show(window[k]) for k in ("kind", "start", "end") if window.get(k))
    else:
        text = _show(window)
    if alert.get("window_start"):
        text = f"{text} from {_show(alert['window_start'])}"
    return text


def _summary(alert: Mapping[str, Any]) -> tuple[str, str]:
    """The alert's severity and a one-line summary of what breached, where and when."""
    metric = _show(alert["metric"])
    if alert.get("feature"):
        metric = f"{metric} of {_show(alert['feature'])}"
    summary = (
        f"{_show(alert['deployment'])} {metric} {_show(alert['value'])} "
        f"(threshold {_show(alert['threshold'])}, window {_window(alert)})"
    )
    return _show(alert.get("severity") or "alert"), summary[:240]


def alert_text(alert: Mapping[str, Any]) -> tuple[str, str]:
    """Subject (one line) and plain-text body of an alert, naming the deployment, metric, value,
    threshold and window, then every other field."""
    alert = _check_alert(alert)
    severity, summary = _summary(alert)
    subject = f"[nexml] {severity}: {summary}"
    metric = _show(alert["metric"])
    if alert.get("feature"):
        metric = f"{metric} of {_show(alert['feature'])}"
    rows = [
        ("Deployment", _show(alert["deployment"])),
        ("Metric", metric),
        ("Value", _show(alert["value"])),
        ("Threshold", _show(alert["threshold"])),
        ("Window", _window(alert)),
    ]
    shown = {*ALERT_FIELDS, "feature", "window_start"}
    rows += [
        (k.replace("_", " ").capitalize(), _show(v))
        for k, v in alert.items()
        if k not in shown and v not in (None, "")
    ]
    width = max(len(k) for k, _ in rows) + 1
    lines = ["A monitor of a deployed model raised an alert.", ""]
    lines += [f"{(k + ':').ljust(width)} {v}" for k, v in rows]
    lines += ["", f"-- nexml-ext {__version__}"]
    return subject, "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- signing


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """For receivers: does ``header`` hold the signature of ``body`` under ``secret``?"""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def _secret(kind: str, variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise DeliveryFailed(f"{kind} sink: environment variable {variable} is not set")
    return value


def _one_line(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:300] or "no detail"


# --------------------------------------------------------------------------- delivery


def deliver(kind: str, config: Mapping[str, Any] | None, alert: Mapping[str, Any]) -> None:
    """Send ``alert`` through a sink of ``kind``. Raises DeliveryFailed (one line, no secret)
    when it could not be delivered, InvalidInput for a bad config or alert."""
    clean = validate_sink(kind, config)
    alert = _check_alert(alert)
    if kind == "webhook":
        _webhook(clean, alert)
    elif kind == "email":
        _email(clean, alert)
    else:
        severity, summary = _summary(alert)
        log.warning("%s alert: %s", severity, summary, extra={"alert": dict(alert)})


def _webhook(config: dict[str, Any], alert: Mapping[str, Any]) -> None:
    try:
        body = alert_json(alert)
    except ValueError as exc:  # NaN or infinity has no JSON form
        raise InvalidInput(f"alert cannot be sent as JSON: {exc}") from None
    secret = _secret("webhook", config["secret_env"]) if config["secret_env"] else ""
    url = config["url"]
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"nexml-ext/{__version__}",
        "X-Nexml-Event": "alert",
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    attempts = config["retries"] + 1
    reason = "not attempted"
    made = 0
    with httpx.Client(timeout=config["timeout"], follow_redirects=False) as client:
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(config["backoff"] * 2 ** (attempt - 1), MAX_BACKOFF))
            made += 1
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.TimeoutException:
                reason = f"timed out after {config['timeout']:g} s"
                continue
            except httpx.HTTPError as exc:
                reason = _one_line(f"{type(exc).__name__}: {exc}", (secret, url, parts.path))
                continue
            if response.is_success:
                return
            reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            if response.is_redirect:
                reason += " (redirects are not followed)"
            if response.status_code != 429 and response.status_code < 500:
                break  # the receiver refused this request: sending it again will not help
    tries = "attempt" if made == 1 else "attempts"
    raise DeliveryFailed(f"webhook to {where} failed after {made} {tries}: {reason}")


def _email(config: dict[str, Any], alert: Mapping[str, Any]) -> None:
    subject, body = alert_text(alert)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = config["from"]
    message["To"] = ", ".join(config["to"])
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="nexml-ext.invalid")
    message["X-Nexml-Deployment"] = _show(alert["deployment"])[:200]
    message.set_content(body)
    password = _secret("email", config["password_env"]) if config["user"] else ""
    host, port = config["host"], config["port"]
    where = f"email via {host}:{port}"
    tls = None
    if config["starttls"] or config["ssl"]:
        try:
            tls = ssl.create_default_context(cafile=config["ca_file"])
        except (OSError, ssl.SSLError) as exc:
            reason = _one_line(f"{type(exc).__name__}: {exc}", ())
            raise DeliveryFailed(f"{where} failed: cannot load ca_file: {reason}") from None
    try:
        if config["ssl"]:
            server = smtplib.SMTP_SSL(host, port, timeout=config["timeout"], context=tls)
        else:
            server = smtplib.SMTP(host, port, timeout=config["timeout"])
        with server:
            if config["starttls"]:
                server.starttls(context=tls)
            if config["user"]:
                server.login(config["user"], password)
            refused = server.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        reason = f"the server refused the login of user {config['user']} ({exc.smtp_code})"
        raise DeliveryFailed(f"{where} failed: {reason}") from None
    except smtplib.SMTPNotSupportedError as exc:
        reason = _one_line(str(exc), (password,))
        raise DeliveryFailed(f"{where} failed: the server does not support it: {reason}") from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryFailed(f"{where} failed: the server refused every recipient") from None
    except smtplib.SMTPResponseException as exc:
        said = (
            exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else ""
        )
        reason = _one_line(f"{type(exc).__name__}: {exc.smtp_code} {said}", (password,))
        raise DeliveryFailed(f"{where} failed: {reason}") from None
    except (smtplib.SMTPException, OSError) as exc:
        reason = _one_line(f"{type(exc).__name__}: {exc}", (password,))
        raise DeliveryFailed(f"{where} failed: {reason}") from None
    if refused:
        names = ", ".join(sorted(refused))
        raise DeliveryFailed(
            f"{where} reached {len(config['to']) - len(refused)} of {len(config['to'])} "
            f"recipients; refused: {names}"
        )
