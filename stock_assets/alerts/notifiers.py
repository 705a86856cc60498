"""Notifier back ends: SMTP email, a generic JSON webhook, SendGrid and Twilio (no Dagster here).

Every back end speaks its service's documented wire format through the standard library (smtplib,
urllib), so there is no vendor SDK to pin and tests can point the base URL at a local receiver.
A back end raises `NotifierError` when the service refuses or cannot be reached; `send_all`
delivers one alert to every channel and reports each outcome, so one broken channel never
silences the others.
"""

from __future__ import annotations

import base64
import json
import math
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal, Protocol

TIMEOUT_S = 10.0
SMS_LIMIT = 1600  # Twilio's maximum message body, in characters
SENDGRID_URL = "https://api.sendgrid.com"
TWILIO_URL = "https://api.twilio.com"


@dataclass(frozen=True)
class Alert:
    """One event worth a person's attention, said the same way on every channel."""

    kind: str  # check_failed | stale_data | drift | strong_signals
    key: str  # identifies the event: the same key is never sent twice by a sensor
    subject: str
    body: str
    severity: Literal["error", "warning", "info"] = "warning"
    links: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"[stock-assets] {self.severity}: {self.subject}"

    def text(self) -> str:
        """The plain-text message: the body, then the links."""
        return "\n".join([self.body, *([""] if self.links else []), *self.links])

    def payload(self) -> dict[str, Any]:
        """The webhook document (``text`` is what chat webhooks such as Slack's display)."""
        return {
            "source": "stock-assets",
            "kind": self.kind,
            "key": self.key,
            "severity": self.severity,
            "subject": self.subject,
            "text": f"{self.title}\n{self.text()}",
            "links": list(self.links),
            "facts": _finite(dict(self.facts)),
        }


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats (a PSI over too few rows) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class NotifierError(RuntimeError):
    """A channel could not deliver an alert (refused, unreachable, misconfigured)."""


class Notifier(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


@dataclass(frozen=True)
class Delivery:
    channel: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def send_all(notifiers: Sequence[Notifier], alert: Alert) -> list[Delivery]:
    """Deliver ``alert`` on every channel; a failure is reported, never raised."""
    deliveries = []
    for notifier in notifiers:
        try:
            notifier.send(alert)
            deliveries.append(Delivery(notifier.name))
        except (NotifierError, OSError, smtplib.SMTPException) as exc:
            deliveries.append(Delivery(notifier.name, f"{type(exc).__name__}: {exc}"))
    return deliveries


def http_request(
    method: str, url: str, body: bytes, headers: Mapping[str, str], channel: str
) -> tuple[int, bytes]:
    """One HTTP exchange; any non-2xx status or transport error is a `NotifierError`."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise NotifierError(f"{channel}: HTTP {exc.code} from {url}: {detail}") from None
    except (urllib.error.URLError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifierError(f"{channel}: {url} unreachable ({reason})") from None


@dataclass(frozen=True)
class SmtpEmail:
    """Plain-text mail through an SMTP relay (STARTTLS on 587 by default, SSL on 465)."""

    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 587
    username: str = ""
    password: str = ""
    security: Literal["starttls", "ssl", "none"] = "starttls"
    name: str = "email"

    def message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = alert.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["X-Stock-Alert-Key"] = alert.key
        message.set_content(alert.text())
        return message

    def send(self, alert: Alert) -> None:
        context = ssl.create_default_context()
        if self.security == "ssl":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT_S, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_S)
        with client:
            if self.security == "starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password)
            refused = client.send_message(self.message(alert), self.sender, list(self.recipients))
        if refused:
            raise NotifierError(f"{self.name}: recipients refused: {sorted(refused)}")


@dataclass(frozen=True)
class Webhook:
    """POST the alert as JSON to any URL (a chat webhook, an incident tool, your own service)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    name: str = "webhook"

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.payload()).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        http_request("POST", self.url, body, headers, self.name)


@dataclass(frozen=True)
class SendGrid:
    """SendGrid's v3 Mail Send API: ``POST /v3/mail/send`` with a Bearer API key."""

    api_key: str
    sender: str
    recipients: tuple[str, ...]
    base_url: str = SENDGRID_URL
    name: str = "sendgrid"

    def request_body(self, alert: Alert) -> dict[str, Any]:
        return {
            "personalizations": [{"to": [{"email": r} for r in self.recipients]}],
            "from": {"email": self.sender},
            "subject": alert.title,
            "content": [{"type": "text/plain", "value": alert.text()}],
        }

    def send(self, alert: Alert) -> None:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
        }
        url = f"{self.base_url.rstrip('/')}/v3/mail/send"
        body = json.dumps(self.request_body(alert)).encode()
        http_request("POST", url, body, headers, self.name)  # 202 Accepted


@dataclass(frozen=True)
class Twilio:
    """Twilio's Messages resource: one form-encoded SMS per recipient, HTTP basic auth."""

    account_sid: str
    auth_token: str
    sender: str  # a Twilio number (E.164) or messaging sender id
    recipients: tuple[str, ...]
    base_url: str = TWILIO_URL
    name: str = "twilio"

    def sms(self, alert: Alert) -> str:
        """Subject first: a phone shows the start; bodies are cut to Twilio's limit."""
        text = f"{alert.title}\n{alert.body}"
        if len(text) > SMS_LIMIT:
            text = text[: SMS_LIMIT - 3] + "..."
        return text

    def send(self, alert: Alert) -> None:
        sid = urllib.parse.quote(self.account_sid, safe="")
        url = f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        token = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        for recipient in self.recipients:
            form = {"To": recipient, "From": self.sender, "Body": self.sms(alert)}
            body = urllib.parse.urlencode(form).encode()
            http_request("POST", url, body, headers, self.name)  # 201 Created
