"""Twilio's JSON shapes as the sandbox renders them: what goes on the wire, every field Twilio sends.

Not twilio/client.py's Message, Participant or Conversation: those are what TwilioApi makes of a resource once
twilio-python has read it (dates parsed to datetime, a few fields picked out), a different shape from the JSON
answered here.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class TwilioErrorBody(TypedDict):
    """Twilio's error JSON (wire.TwilioError)."""

    code: int
    message: str
    more_info: str
    status: int


class MessagingBinding(TypedDict):
    """A non-chat participant's channel address (WhatsApp, SMS, Messenger...)."""

    type: str
    address: str
    proxy_address: str | None


class MediaItem(TypedDict):
    """One entry of a message's `media` as REST renders it (webhooks rename the keys)."""

    sid: str
    content_type: str
    filename: str | None
    size: int
    category: str


class DeliverySummary(TypedDict):
    """A message's `delivery`: counts over the conversation's non-chat participants."""

    total: int
    sent: str
    delivered: str
    read: str
    failed: str
    undelivered: str


class ConversationLinks(TypedDict):
    participants: str
    messages: str
    webhooks: str
    export: str


class ConversationResource(TypedDict):
    sid: str
    account_sid: str
    chat_service_sid: str
    messaging_service_sid: str | None
    friendly_name: str | None
    unique_name: str | None
    attributes: str  # JSON text
    date_created: str
    date_updated: str
    state: str
    timers: dict[str, str]
    bindings: dict[str, object]
    url: str
    links: ConversationLinks


class ParticipantResource(TypedDict):
    account_sid: str
    conversation_sid: str
    sid: str
    identity: str | None
    attributes: str  # JSON text
    messaging_binding: MessagingBinding | None
    role_sid: str | None
    date_created: str
    date_updated: str
    url: str
    last_read_message_index: int | None
    last_read_timestamp: str | None
    chat_service_sid: NotRequired[str]  # the service-scoped schema only


class ParticipantConversationLinks(TypedDict):
    participant: str
    conversation: str


class ParticipantConversationResource(TypedDict):
    """One of a participant's conversations (/ParticipantConversations)."""

    account_sid: str
    chat_service_sid: str
    participant_sid: str
    participant_user_sid: str | None
    participant_identity: str | None
    participant_messaging_binding: MessagingBinding | None
    conversation_sid: str
    conversation_unique_name: str | None
    conversation_friendly_name: str | None
    conversation_attributes: str
    conversation_date_created: str
    conversation_date_updated: str
    conversation_created_by: str | None
    conversation_state: str
    conversation_timers: dict[str, str]
    links: ParticipantConversationLinks


class MessageLinks(TypedDict):
    delivery_receipts: str
    channel_metadata: str


class MessageResource(TypedDict):
    sid: str
    account_sid: str
    conversation_sid: str
    body: str | None
    media: list[MediaItem] | None
    author: str | None
    participant_sid: str | None
    attributes: str  # JSON text
    date_created: str
    date_updated: str
    index: int
    delivery: DeliverySummary | None
    content_sid: str | None
    url: str
    links: MessageLinks
    chat_service_sid: NotRequired[str]  # the service-scoped schema only


class PageMeta(TypedDict):
    """The `meta` of Twilio's list envelope (the list itself sits under the name `key` gives)."""

    page: int
    page_size: int
    first_page_url: str
    previous_page_url: str | None
    url: str
    next_page_url: str | None
    key: str


class MediaLinks(TypedDict):
    content: str  # relative, as MCS answers it
    content_direct_temporary: str | None


class MediaResource(TypedDict):
    """An MCS media resource."""

    sid: str
    account_sid: str
    service_sid: str
    date_created: str
    date_upload_updated: str
    date_updated: str
    links: MediaLinks
    size: int
    content_type: str
    filename: str | None
    author: str
    category: str
    message_sid: str | None
    channel_sid: str | None
    url: str
    is_multipart_upstream: bool


class TokenValidation(TypedDict):
    """IAM's Tokens/validate answer: every key always there, the failures' nulled out."""

    valid: bool
    code: int
    message: str | None
    expiration: str | None
    realm_user_id: str | None
    identity: str | None
    roles: list[str] | None
    worker_sid: str | None
    flex_instance_sid: str | None
    flex_user_sid: str | None


class PreEventDraft(TypedDict):
    """An agent's message before the pre-event hook has let it through (no sid, no index yet)."""

    source: str
    conversation_sid: str
    date_created: str
    author: str
    attributes: str
    body: str | None
    participant_sid: str
    media: str  # JSON text: a list of MediaItem


class AgentSend(TypedDict):
    """What Sandbox.agent_sends_media answers."""

    published: bool
    pre_status: int | None
    message_sid: str | None
    params: dict[str, str] | None  # the onMessageAdded that followed


class WebhookDelivery(TypedDict):
    """One recorded webhook delivery."""

    url: str
    params: dict[str, str]
    status: int | None
    error: str | None
