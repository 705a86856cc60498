"""The alert settings as a typed Dagster resource: channels (all off until configured), thresholds.

`from_env` passes secrets as `dg.EnvVar`, so the UI shows which variable holds a key, never the
key; a channel whose variables are unset stays off, and the sensors skip while none is on.
"""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field

from stock_assets.alerts.events import DAGSTER_UI_DEFAULT
from stock_assets.alerts.notifiers import (
    SENDGRID_URL,
    TWILIO_URL,
    Notifier,
    SendGrid,
    SmtpEmail,
    Twilio,
    Webhook,
)

SECRETS = {
    "smtp_password": "STOCK_ALERT_SMTP_PASSWORD",
    "webhook_url": "STOCK_ALERT_WEBHOOK_URL",  # chat webhook URLs embed their token
    "sendgrid_api_key": "STOCK_ALERT_SENDGRID_API_KEY",
    "twilio_auth_token": "STOCK_ALERT_TWILIO_AUTH_TOKEN",
}
PLAIN = {
    "smtp_host": "STOCK_ALERT_SMTP_HOST",
    "smtp_port": "STOCK_ALERT_SMTP_PORT",
    "smtp_username": "STOCK_ALERT_SMTP_USERNAME",
    "smtp_security": "STOCK_ALERT_SMTP_SECURITY",
    "email_from": "STOCK_ALERT_EMAIL_FROM",
    "email_to": "STOCK_ALERT_EMAIL_TO",
    "sendgrid_url": "STOCK_ALERT_SENDGRID_URL",
    "twilio_account_sid": "STOCK_ALERT_TWILIO_ACCOUNT_SID",
    "twilio_from": "STOCK_ALERT_TWILIO_FROM",
    "twilio_to": "STOCK_ALERT_TWILIO_TO",
    "twilio_url": "STOCK_ALERT_TWILIO_URL",
    "dagster_ui_url": "STOCK_DAGSTER_UI_URL",
    "signal_z_threshold": "STOCK_ALERT_SIGNAL_Z",
    "max_stale_sessions": "STOCK_ALERT_MAX_STALE_SESSIONS",
}
LISTS = {"email_to", "twilio_to"}  # comma-separated in the environment


class NotifierResource(dg.ConfigurableResource):
    """Where alerts go and what counts as one (docs/ALERTS.md lists the variables)."""

    smtp_host: str = Field(default="", description="SMTP relay; email is off while empty")
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    email_from: str = Field(default="", description="sender for SMTP and SendGrid")
    email_to: list[str] = Field(default_factory=list, description="recipients (SMTP, SendGrid)")
    webhook_url: str = Field(default="", description="JSON POST target; off while empty")
    sendgrid_api_key: str = Field(default="", description="SendGrid is off while empty")
    sendgrid_url: str = SENDGRID_URL
    twilio_account_sid: str = Field(default="", description="Twilio SMS is off while empty")
    twilio_auth_token: str = ""
    twilio_from: str = ""
    twilio_to: list[str] = Field(default_factory=list)
    twilio_url: str = TWILIO_URL
    dagster_ui_url: str = Field(default=DAGSTER_UI_DEFAULT, description="links in alerts")
    signal_z_threshold: float = Field(
        default=3.0, description="|z| of a prediction within its session that makes it strong"
    )
    max_stale_sessions: int = Field(
        default=1, description="sessions a table may lag the calendar before it is stale"
    )

    @classmethod
    def from_env(cls) -> NotifierResource:
        """Only the variables that are set; secrets as `dg.EnvVar`, resolved when used."""
        fields: dict = {}
        for name, var in SECRETS.items():
            if os.environ.get(var):
                fields[name] = dg.EnvVar(var)
        for name, var in PLAIN.items():
            value = os.environ.get(var, "").strip()
            if value and name in LISTS:
                fields[name] = [v.strip() for v in value.split(",") if v.strip()]
            elif value:
                fields[name] = value
        return cls(**fields)

    def notifiers(self) -> list[Notifier]:
        """The channels whose settings are complete, in a fixed order."""
        channels: list[Notifier] = []
        recipients = tuple(self.email_to)
        if self.smtp_host and self.email_from and recipients:
            channels.append(
                SmtpEmail(
                    host=self.smtp_host,
                    port=self.smtp_port,
                    sender=self.email_from,
                    recipients=recipients,
                    username=self.smtp_username,
                    password=self.smtp_password,
                    security=self.smtp_security,
                )
            )
        if self.webhook_url:
            channels.append(Webhook(url=self.webhook_url))
        if self.sendgrid_api_key and self.email_from and recipients:
            channels.append(
                SendGrid(
                    api_key=self.sendgrid_api_key,
                    sender=self.email_from,
                    recipients=recipients,
                    base_url=self.sendgrid_url,
                )
            )
        twilio = (self.twilio_account_sid, self.twilio_auth_token, self.twilio_from)
        if all(twilio) and self.twilio_to:
            channels.append(
                Twilio(
                    account_sid=self.twilio_account_sid,
                    auth_token=self.twilio_auth_token,
                    sender=self.twilio_from,
                    recipients=tuple(self.twilio_to),
                    base_url=self.twilio_url,
                )
            )
        return channels
