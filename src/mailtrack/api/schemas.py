"""Request bodies. Field-level checks here; address/header safety in domain.addresses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    # strict: "yes" or 1 is not a boolean, true is not a client id (a 422 names the field)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class AttachmentIn(Strict):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", max_length=255)
    content: str = Field(description="base64-encoded bytes")


class SourceIn(Strict):
    type: Literal["task_sheet", "invoice", "purchase_order", "event_message"]
    reference: str | None = Field(None, max_length=200, description="e.g. a task or invoice number")
    event: str | None = Field(None, max_length=64, description="task_created, schedule_created, …")


class EmailIn(Strict):
    from_: str = Field(alias="from", description="Sender, 'Name <addr>' or 'addr'")
    to: list[str] = Field(default_factory=list, max_length=1000)
    cc: list[str] = Field(default_factory=list, max_length=1000)
    bcc: list[str] = Field(default_factory=list, max_length=1000)
    reply_to: str | None = None
    subject: str = Field("", max_length=998)
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    headers: dict[str, str] = Field(default_factory=dict, description="X-* and a safe subset")
    source: SourceIn | None = None
    client: str | int | None = Field(None, description="client id or external reference")
    tracking: bool | None = Field(None, description="true / false / null = inherit client and site")
    unsubscribe: bool | None = Field(None, description="List-Unsubscribe + one-click (RFC 8058); null = the "
                                     "default for the source type (on only for event messages)")
    metadata: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, max_length=200, description="per email, inside a batch")

    @field_validator("client", mode="before")
    @classmethod
    def _client_id_or_reference(cls, value: object) -> object:
        # checked before the union, so the error names "client" rather than "client.str"
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise ValueError("client must be a client id (an integer) or its external reference (a string)")
        return value


class BatchIn(Strict):
    emails: list[EmailIn] = Field(min_length=1)


class SuppressionIn(Strict):
    address: str
    reason: str = Field("added manually", max_length=500)


class TrackingSetting(Strict):
    enabled: bool = Field(description="Track delivery status, opens and clicks (site default)")


class ClientIn(Strict):
    external_ref: str = Field(min_length=1, max_length=200)
    name: str | None = Field(None, max_length=200)
    tracking: bool | None = None


class ClientPatch(Strict):
    tracking: bool | None = Field(description="true / false / null = inherit the site default")
