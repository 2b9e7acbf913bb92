"""Twilio REST: Conversations (twilio-python), Media Content Service and Flex token validation (plain HTTP).

Every Twilio call of the service goes through `TwilioApi`: its methods answer plain dicts and raise only
TwilioHttpError, and the lookups worth caching (a conversation's participants, its service) are cached here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar, cast

from flask import Flask, current_app
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from ..humanize import format_bytes
from ..runtime.cache import ExpiringCache
from ..runtime.retry import TRANSIENT_STATUSES
from .http import (
    CONVERSATIONS_HOST,
    IAM_HOST,
    MCS_HOST,
    NO_AUTH,
    TooLarge,
    TwilioHttp,
    TwilioHttpError,
    TwilioPythonBridge,
    raise_for_status,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)
T = TypeVar("T")

# One REST call per conversation per minute is plenty for who is in it (Flex adds an agent when they accept a
# task: authorization asks again before it refuses).
PARTICIPANTS_TTL_S = 60
# A conversation never moves to another Conversations service.
SERVICE_SID_TTL_S = 3600
PAGE_SIZE = 100


# What TwilioApi answers: twilio-python's resources as plain dicts, each field as twilio-python types it (a field
# Twilio left out is None).
class Message(TypedDict):
    sid: str | None
    author: str | None
    participant_sid: str | None
    media: list[dict[str, Any]]
    attributes: str | None  # JSON text
    date_created: datetime | None


class ListedMessage(TypedDict):
    sid: str | None
    account_sid: str | None
    author: str | None
    media: list[dict[str, Any]]
    attributes: str | None
    date_created: datetime | None


class CreatedMessage(TypedDict):
    sid: str | None
    media: list[dict[str, Any]]
    index: int | None


class Participant(TypedDict):
    sid: str | None
    identity: str | None
    messaging_binding: dict[str, object] | None
    attributes: str | None


class Conversation(TypedDict):
    sid: str | None
    chat_service_sid: str | None
    friendly_name: str | None
    attributes: str | None


class ListedConversation(TypedDict, total=False):
    sid: str | None
    friendly_name: str | None
    state: str | None
    date_created: datetime | None
    chat_service_sid: str | None  # the account's conversations only, not an identity's


class FlexTokenVerdict(TypedDict, total=False):
    """IAM's answer on a Flex token (twilio-flex-token-validator's reading of it)."""

    valid: bool
    message: str
    identity: str
    realm_user_id: str
    roles: list[str]
    worker_sid: str
    expiration: str


class SandboxAccount(Protocol):
    """The local sandbox (webhook_app.sandbox.Sandbox) as the Twilio client sees it: an account and its hosts."""

    account_sid: str
    auth_token: str

    def wsgi_app(self) -> WSGIApplication: ...


class TwilioApi:
    def __init__(
        self, http: TwilioHttp, account_sid: str, auth_token: str, sandbox: SandboxAccount | None = None
    ) -> None:
        self.http = http
        self.account_sid = account_sid
        # The auth token signs webhooks and validates Flex tokens; REST may use an API key instead.
        self.auth_token = auth_token
        self.sandbox = sandbox
        username, password = http.auth or (account_sid, auth_token)
        self.client = Client(username, password, account_sid, http_client=TwilioPythonBridge(http))
        self._participants: ExpiringCache[str, list[Participant]] = ExpiringCache(ttl_s=PARTICIPANTS_TTL_S)
        self._service_sids: ExpiringCache[str, str | None] = ExpiringCache(ttl_s=SERVICE_SID_TTL_S)

    # -- Conversations ---------------------------------------------------------------------------
    def fetch_message(self, conversation_sid: str, message_sid: str) -> Message:
        message = self._call(
            lambda: self.client.conversations.v1.conversations(conversation_sid).messages(message_sid).fetch()
        )
        return {
            "sid": message.sid,
            "author": message.author,
            "participant_sid": message.participant_sid,
            "media": message.media or [],
            "attributes": message.attributes,
            "date_created": message.date_created,
        }

    def list_participants(self, conversation_sid: str) -> list[Participant]:
        participants = self._call(
            lambda: self.client.conversations.v1.conversations(conversation_sid).participants.list(page_size=100)
        )
        return [
            {"sid": p.sid, "identity": p.identity, "messaging_binding": p.messaging_binding, "attributes": p.attributes}
            for p in participants
        ]

    def participants(self, conversation_sid: str, *, refresh: bool = False) -> list[Participant]:
        """list_participants, cached per conversation (`refresh`: ask Twilio now and cache its answer)."""
        cache = self._participants
        # Through the attribute, looked up per call, so that a test can count the calls behind the cache.
        return (cache.refresh if refresh else cache.get_or_fetch)(
            conversation_sid, lambda sid: self.list_participants(sid)
        )

    def cached_participants(self, conversation_sid: str) -> list[Participant] | None:
        """The cached participants, or None when none are cached (nothing is fetched)."""
        return self._participants.get(conversation_sid)

    def conversation_service_sid(self, conversation_sid: str) -> str | None:
        return self._service_sids.get_or_fetch(
            conversation_sid, lambda sid: self.fetch_conversation(sid)["chat_service_sid"]
        )

    def conversations(self, limit: int | None = None) -> Iterator[ListedConversation]:
        """The account's conversations, oldest first (Twilio's order), page by page."""
        for c in self._stream(
            lambda: self.client.conversations.v1.conversations.stream(limit=limit, page_size=PAGE_SIZE)
        ):
            yield {
                "sid": c.sid,
                "friendly_name": c.friendly_name,
                # twilio-python annotates states with its class of constants; the value is Twilio's JSON string.
                "state": cast(str | None, c.state),
                "date_created": c.date_created,
                "chat_service_sid": c.chat_service_sid,
            }

    def participant_conversations(
        self, identity: str, limit: int | None = None, page_size: int = 50
    ) -> Iterator[ListedConversation]:
        """The conversations `identity` is a participant of (50: that resource's maximum page)."""
        for c in self._stream(
            lambda: self.client.conversations.v1.participant_conversations.stream(
                identity=identity, limit=limit, page_size=page_size
            )
        ):
            yield {
                "sid": c.conversation_sid,
                "friendly_name": c.conversation_friendly_name,
                "state": cast(str | None, c.conversation_state),  # as above
                "date_created": c.conversation_date_created,
            }

    def messages(
        self, conversation_sid: str, *, newest_first: bool = True, limit: int | None = None
    ) -> Iterator[ListedMessage]:
        order = "desc" if newest_first else "asc"
        for m in self._stream(
            lambda: self.client.conversations.v1.conversations(conversation_sid).messages.stream(
                order=order, limit=limit, page_size=min(limit or PAGE_SIZE, PAGE_SIZE)
            )
        ):
            yield {
                "sid": m.sid,
                "account_sid": m.account_sid,
                "author": m.author,
                "media": m.media or [],
                "attributes": m.attributes,
                "date_created": m.date_created,
            }

    def create_message(
        self,
        conversation_sid: str,
        *,
        author: str,
        media_sid: str,
        body: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> CreatedMessage:
        kwargs = {"author": author, "media_sid": media_sid}
        if body:
            kwargs["body"] = body
        if attributes:
            kwargs["attributes"] = json.dumps(attributes)
        message = self._call(
            lambda: self.client.conversations.v1.conversations(conversation_sid).messages.create(**kwargs)
        )
        return {"sid": message.sid, "media": message.media or [], "index": message.index}

    def fetch_conversation(self, conversation_sid: str) -> Conversation:
        conversation = self._call(lambda: self.client.conversations.v1.conversations(conversation_sid).fetch())
        return {
            "sid": conversation.sid,
            "chat_service_sid": conversation.chat_service_sid,
            "friendly_name": conversation.friendly_name,
            "attributes": conversation.attributes,
        }

    def _stream(self, start: Callable[[], Iterable[T]]) -> Iterator[T]:
        """A twilio-python stream whose every page request raises TwilioHttpError, as _call does."""
        iterator = self._call(lambda: iter(start()))
        while True:
            try:
                item = self._call(lambda: next(iterator))
            except StopIteration:
                return
            yield item

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except TwilioRestException as exc:
            raise TwilioHttpError(
                f"{exc.method} {exc.uri} -> {exc.status}: {exc.msg}",
                exc.status,
                transient=exc.status in TRANSIENT_STATUSES,
                code=exc.code,
            ) from exc
        except TwilioException as exc:
            # List pages fail with a bare TwilioException carrying the response as its second argument.
            response = exc.args[1] if len(exc.args) > 1 else None
            status = getattr(response, "status_code", None)
            raise TwilioHttpError(f"{exc.args[0]}: {response}", status, transient=status in TRANSIENT_STATUSES) from exc

    # -- Media Content Service (twilio-python has no MCS code) -------------------------------------
    def media_url(self, chat_service_sid: str, media_sid: str) -> str:
        return f"{MCS_HOST}/v1/Services/{chat_service_sid}/Media/{media_sid}"

    def fetch_media(self, chat_service_sid: str, media_sid: str) -> dict[str, Any]:
        url = self.media_url(chat_service_sid, media_sid)
        media: dict[str, Any] = raise_for_status(self.http.request("GET", url), "GET", url).json()
        return media

    def download_media(self, chat_service_sid: str, media_sid: str, dest: IO[bytes], max_bytes: int) -> dict[str, Any]:
        """Metadata first (size check before any byte moves), then the bytes, streamed into `dest`."""
        meta = self.fetch_media(chat_service_sid, media_sid)
        size = meta.get("size")
        if isinstance(size, int) and size > max_bytes:
            raise TooLarge(f"media is {format_bytes(size)}, over the {format_bytes(max_bytes)} cap")
        links = meta.get("links") or {}
        # The direct link is pre-signed for 300 s and needs no auth; /Content needs basic auth.
        direct = links.get("content_direct_temporary")
        if direct:
            # Presigned storage URLs reject a second auth mechanism: send no Authorization header.
            url, auth = direct, NO_AUTH
        else:
            url, auth = self.media_url(chat_service_sid, media_sid) + "/Content", None
        response = self.http.request("GET", url, stream_to=dest, max_bytes=max_bytes, auth=auth)
        raise_for_status(response, "GET", url)
        dest.flush()
        return meta

    def media_head(self, chat_service_sid: str, media_sid: str, count: int, timeout_s: float) -> bytes:
        """A media's first `count` bytes in one request (what a file is, decided within a deadline): /Content with
        basic auth, not the metadata and then its temporary link, which would be two round trips."""
        return self.http.first_bytes(self.media_url(chat_service_sid, media_sid) + "/Content", count, timeout_s)

    def upload_media(
        self, chat_service_sid: str, data: IO[bytes] | bytes, content_type: str, filename: str
    ) -> dict[str, Any]:
        url = f"{MCS_HOST}/v1/Services/{chat_service_sid}/Media"
        body = data if isinstance(data, bytes) else data.read()
        response = self.http.request(
            "POST",
            url,
            data=body,
            retry=True,  # an unattached upload is garbage-collected: retrying is harmless
            headers={"Content-Type": content_type, "Content-Disposition": f'attachment; filename="{filename}"'},
            params={"filename": filename},
        )
        media: dict[str, Any] = raise_for_status(response, "POST", url).json()
        return media

    # -- Flex tokens (twilio-flex-token-validator) -------------------------------------------------
    def validate_flex_token(self, token: str) -> FlexTokenVerdict:
        url = f"{IAM_HOST}/v1/Accounts/{self.account_sid}/Tokens/validate"
        # IAM wants the account's own credentials, not an API key.
        response = self.http.request(
            "POST", url, json_body={"token": token}, auth=(self.account_sid, self.auth_token), retry=True
        )
        if 400 <= response.status < 500 and response.status not in (401, 403, 429):
            # A verdict on the token, not on us: twilio-flex-token-validator reads `valid` whatever the status,
            # and a 400 answers a token IAM cannot even parse. 401/403 mean our own credentials were refused,
            # 429 and 5xx that IAM is unavailable: those raise, and the agent gets 503, not "log in again".
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict) and isinstance(answer.get("valid"), bool):
                return cast(FlexTokenVerdict, answer)  # IAM's JSON object, as twilio-flex-token-validator reads it
            if response.status == 400:
                message = answer.get("message") if isinstance(answer, dict) else None
                return {"valid": False, "message": message or "Twilio could not read the Flex token"}
        verdict: FlexTokenVerdict = raise_for_status(response, "POST", url).json()
        return verdict


def init_app(app: Flask, sandbox: SandboxAccount | None = None) -> None:
    """`sandbox`: the local sandbox account (webhook_app.sandbox) standing in for Twilio, or None for Twilio."""
    config = app.config
    if sandbox is not None:
        account_sid, auth_token = sandbox.account_sid, sandbox.auth_token
        auth = (account_sid, auth_token)
    else:
        account_sid, auth_token = config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"]
        if not auth_token:
            raise RuntimeError("TWILIO_AUTH_TOKEN must be set together with TWILIO_ACCOUNT_SID")
        if config.get("TWILIO_API_KEY_SID") and config.get("TWILIO_API_KEY_SECRET"):
            auth = (config["TWILIO_API_KEY_SID"], config["TWILIO_API_KEY_SECRET"])
        else:
            auth = (account_sid, auth_token)
    base_url = config.get("TWILIO_API_BASE_URL")
    http = TwilioHttp(
        auth=auth,
        base_url=base_url,
        # With no base URL the sandbox answers in-process; with one, real HTTP goes there (a served sandbox).
        wsgi_app=sandbox.wsgi_app() if sandbox is not None and not base_url else None,
        timeout_s=config["TWILIO_HTTP_TIMEOUT_S"],
        retries=config["TWILIO_HTTP_RETRIES"],
    )
    app.extensions["twilio"] = TwilioApi(http, account_sid, auth_token, sandbox=sandbox)


def twilio_api() -> TwilioApi:
    api: TwilioApi = current_app.extensions["twilio"]  # set by init_app above
    return api


__all__ = ["TwilioApi", "init_app", "twilio_api", "CONVERSATIONS_HOST"]
