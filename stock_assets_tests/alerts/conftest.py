"""Real local receivers for the alert channels: an SMTP server and an HTTP server.

The SMTP server is aiosmtpd's (the real protocol, with AUTH LOGIN/PLAIN); the HTTP server stands
in for SendGrid, Twilio and webhook targets at their HTTP boundary and records every request
exactly as it arrived, so tests assert the wire format, not our own objects.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from stock_assets.resources.broker import free_port

SMTP_USER, SMTP_PASSWORD = "alerts", "s3cret"


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: object  # email.message.EmailMessage
    login: str | None


@dataclass
class SmtpServer:
    host: str
    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        login = session.auth_data.login.decode() if session.auth_data else None
        self.server.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """aiosmtpd on a free loopback port; accepts one user (AUTH allowed without TLS here)."""
    server = SmtpServer("127.0.0.1", free_port())

    def authenticator(smtp, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (SMTP_USER, SMTP_PASSWORD)
        if ok:
            server.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    controller = Controller(
        _Handler(server),
        hostname=server.host,
        port=server.port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    url: str
    requests: list[Request] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # path prefix -> status to answer

    def status_for(self, path: str) -> int:
        matches = [p for p in self.statuses if path.startswith(p)]
        return self.statuses[max(matches, key=len)] if matches else 200


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """An HTTP server in a thread that records each request and answers by path prefix."""
    receiver = HttpReceiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's hook name)
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            receiver.requests.append(
                Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            status = receiver.status_for(self.path)
            answer = json.dumps({"status": status}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
