"""The Twilio sandbox must answer in Twilio's wire shapes: checked against Twilio's OpenAPI spec and clients."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry
from referencing.jsonschema import DRAFT4
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run from anywhere, installed or not
    sys.path.insert(0, str(REPO_ROOT))

from webhook_app.sandbox import Sandbox  # noqa: E402
from webhook_app.sandbox import media as sandbox_module  # noqa: E402

# Twilio's own spec (twilio/twilio-oai, MIT) is not copied into this repository: CI and developers keep it in a
# `shared/` folder beside the checkout.
SPEC_PATH = Path(
    os.environ.get("TWILIO_CONVERSATIONS_OAS")
    or REPO_ROOT.parent / "shared" / "twilio" / "twilio_conversations_v1.json"
)
SPEC_URI = "urn:twilio-conversations-v1"

OGG = b"OggS\x00\x02" + bytes(range(256)) * 4  # stands in for a voice note; only the bytes' identity matters


# -- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture
def sandbox(tmp_path) -> Sandbox:
    return Sandbox(str(tmp_path / "sandbox.db"))


@pytest.fixture
def client(sandbox):
    return sandbox.wsgi_app().test_client()


@pytest.fixture
def auth(sandbox):
    return (sandbox.account_sid, sandbox.auth_token)


@pytest.fixture(scope="module")
def spec() -> dict:
    if not SPEC_PATH.exists():
        message = f"Twilio OpenAPI spec not found at {SPEC_PATH} (set TWILIO_CONVERSATIONS_OAS)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI has the spec: a missing one there is a broken pipeline, never a skip
        pytest.skip(message)
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="module")
def validator_for(spec):
    """JSON pointer into the spec -> an OAS 3.0 validator whose `$ref`s resolve against the whole spec."""
    registry = Registry().with_resource(SPEC_URI, DRAFT4.create_resource(spec))

    def make(pointer: str) -> OAS30Validator:
        return OAS30Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry, format_checker=oas30_format_checker)

    return make


def schema_pointer(name: str) -> str:
    return f"/components/schemas/{name}"


def response_pointer(path: str, method: str, status: str) -> str:
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema"


def resolve(spec: dict, pointer: str) -> dict:
    node = spec
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def upload(client, auth, sandbox, data=OGG, content_type="audio/ogg", filename="voice.ogg"):
    return client.post(
        f"/v1/Services/{sandbox.chat_service_sid}/Media",
        data=data,
        auth=auth,
        headers={"Content-Type": content_type},
        query_string={"Filename": filename},
    )


# -- account ------------------------------------------------------------------------------------------------
def test_account_is_random_and_stable_per_file(tmp_path):
    first = Sandbox(str(tmp_path / "a.db"))
    again = Sandbox(str(tmp_path / "a.db"))
    other = Sandbox(str(tmp_path / "b.db"))
    assert (again.account_sid, again.auth_token, again.chat_service_sid) == (
        first.account_sid,
        first.auth_token,
        first.chat_service_sid,
    )
    assert other.account_sid != first.account_sid
    assert first.account_sid.startswith("AC") and len(first.account_sid) == 34
    assert first.chat_service_sid.startswith("IS") and len(first.chat_service_sid) == 34
    assert len(first.auth_token) == 32 and int(first.auth_token, 16) >= 0


def test_processes_opening_a_new_file_at_once_agree_on_the_account(tmp_path):
    db = tmp_path / "race.db"
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]); from webhook_app.sandbox import Sandbox;"
        " s = Sandbox(sys.argv[1]); print(s.account_sid, s.auth_token, s.chat_service_sid)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db), str(REPO_ROOT)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outputs) == 1


# -- auth and errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/v1/Conversations",
        "/v1/Services/{IS}/Media/ME00000000000000000000000000000000",
        "/v1/Accounts/{AC}/Tokens/validate",
    ],
)
def test_every_endpoint_wants_basic_auth(client, sandbox, path):
    path = path.format(IS=sandbox.chat_service_sid, AC=sandbox.account_sid)
    for credentials in (None, (sandbox.account_sid, "0" * 32), ("AC" + "0" * 32, sandbox.auth_token)):
        resp = client.get(path, auth=credentials)
        assert resp.status_code == 401
        assert resp.json == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }


def test_unknown_resources_answer_twilio_404(client, auth):
    for path in ("/v1/Conversations/CH" + "0" * 32, "/v1/Nowhere"):
        resp = client.get(path, auth=auth)
        assert resp.status_code == 404
        assert resp.json == {
            "code": 20404,
            "message": f"The requested resource {path} was not found",
            "more_info": "https://www.twilio.com/docs/errors/20404",
            "status": 404,
        }


# -- Conversations against the OpenAPI spec -----------------------------------------------------------------
@pytest.mark.parametrize("scoped", [False, True], ids=["default-service", "service-scoped"])
def test_conversations_endpoints_match_the_spec(client, auth, sandbox, spec, validator_for, scoped):
    prefix = f"/v1/Services/{sandbox.chat_service_sid}" if scoped else "/v1"
    spec_prefix = "/v1/Services/{ChatServiceSid}" if scoped else "/v1"
    names = {
        "conversation": "conversations.v1.service.service_conversation" if scoped else "conversations.v1.conversation",
        "participant": (
            "conversations.v1.service.service_conversation.service_conversation_participant"
            if scoped
            else "conversations.v1.conversation.conversation_participant"
        ),
        "message": (
            "conversations.v1.service.service_conversation.service_conversation_message"
            if scoped
            else "conversations.v1.conversation.conversation_message"
        ),
        "participant_conversation": (
            "conversations.v1.service.service_participant_conversation"
            if scoped
            else "conversations.v1.participant_conversation"
        ),
    }

    def check(kind: str, resource: dict):
        pointer = schema_pointer(names[kind])
        validator_for(pointer).validate(resource)
        # The schemas list every field Twilio sends and nothing requires them: compare key sets as well.
        assert set(resource) == set(resolve(spec, pointer)["properties"]), kind

    def check_list(spec_path: str, body: dict, key: str):
        validator_for(response_pointer(spec_prefix + spec_path, "get", "200")).validate(body)
        assert set(body) == {key, "meta"} and body["meta"]["key"] == key

    resp = client.post(
        f"{prefix}/Conversations", auth=auth, data={"FriendlyName": "Alice", "Attributes": '{"topic": "voice"}'}
    )
    assert resp.status_code == 201
    conversation = resp.json
    check("conversation", conversation)
    sid = conversation["sid"]
    assert conversation["url"] == f"https://conversations.twilio.com{prefix}/Conversations/{sid}"
    example = spec["paths"]["/v1/Conversations"]["post"]["responses"]["201"]["content"]["application/json"]
    assert set(conversation["links"]) == set(example["examples"]["create"]["value"]["links"])

    check("conversation", client.get(f"{prefix}/Conversations/{sid}", auth=auth).json)
    check_list("/Conversations", client.get(f"{prefix}/Conversations", auth=auth).json, "conversations")

    resp = client.post(
        f"{prefix}/Conversations/{sid}/Participants",
        auth=auth,
        data={
            "MessagingBinding.Address": "whatsapp:+15550001111",
            "MessagingBinding.ProxyAddress": "whatsapp:+14155238886",
        },
    )
    assert resp.status_code == 201
    customer = resp.json
    check("participant", customer)
    assert customer["messaging_binding"] == {
        "type": "whatsapp",
        "address": "whatsapp:+15550001111",
        "proxy_address": "whatsapp:+14155238886",
    }
    assert customer["identity"] is None
    resp = client.post(
        f"{prefix}/Conversations/{sid}/Participants",
        auth=auth,
        data={"Identity": "agent@example.com", "Attributes": '{"role": "agent"}'},
    )
    assert resp.status_code == 201
    agent = resp.json
    check("participant", agent)
    assert agent["messaging_binding"] is None and agent["attributes"] == '{"role": "agent"}'
    check("participant", client.get(f"{prefix}/Conversations/{sid}/Participants/{agent['sid']}", auth=auth).json)
    participants = client.get(f"{prefix}/Conversations/{sid}/Participants", auth=auth).json
    check_list("/Conversations/{ConversationSid}/Participants", participants, "participants")
    assert [p["sid"] for p in participants["participants"]] == [customer["sid"], agent["sid"]]

    example = spec["paths"]["/v1/ParticipantConversations"]["get"]["responses"]["200"]["content"]["application/json"][
        "examples"
    ]["readFullByIdentity"]["value"]
    for query, participant in (
        ({"Identity": "agent@example.com"}, agent),
        ({"Address": "whatsapp:+15550001111"}, customer),
    ):
        listed = client.get(f"{prefix}/ParticipantConversations", auth=auth, query_string=query).json
        check_list("/ParticipantConversations", listed, "conversations")
        assert set(listed["meta"]) == set(example["meta"])
        (entry,) = listed["conversations"]
        check("participant_conversation", entry)
        assert (entry["conversation_sid"], entry["participant_sid"]) == (sid, participant["sid"])
        assert entry["participant_identity"] == participant["identity"]
        assert entry["participant_messaging_binding"] == participant["messaging_binding"]
        assert entry["conversation_friendly_name"] == "Alice" and entry["conversation_state"] == "active"
        assert entry["links"] == {"participant": participant["url"], "conversation": conversation["url"]}

    media_sid = upload(client, auth, sandbox).json["sid"]
    resp = client.post(
        f"{prefix}/Conversations/{sid}/Messages",
        auth=auth,
        data={"Author": "agent@example.com", "Body": "hi", "MediaSid": media_sid},
    )
    assert resp.status_code == 201
    message = resp.json
    check("message", message)
    assert message["participant_sid"] == agent["sid"] and message["index"] == 0
    check("message", client.get(f"{prefix}/Conversations/{sid}/Messages/{message['sid']}", auth=auth).json)
    messages = client.get(f"{prefix}/Conversations/{sid}/Messages", auth=auth).json
    check_list("/Conversations/{ConversationSid}/Messages", messages, "messages")
    example = spec["paths"]["/v1/Conversations/{ConversationSid}/Messages"]["get"]["responses"]["200"]
    example_meta = example["content"]["application/json"]["examples"]["readFull"]["value"]["meta"]
    assert set(messages["meta"]) == set(example_meta)


def test_the_schema_check_can_fail(client, auth, sandbox, validator_for):
    conversation = client.post("/v1/Conversations", auth=auth, data={"FriendlyName": "x"}).json
    single = validator_for(schema_pointer("conversations.v1.conversation"))
    single.validate(conversation)
    for broken in (
        {**conversation, "sid": "XX" + conversation["sid"][2:]},
        {**conversation, "state": "sleeping"},
        {**conversation, "date_created": "yesterday"},
        {**conversation, "links": ["not", "a", "map"]},
    ):
        with pytest.raises(ValidationError):
            single.validate(broken)
    listing = validator_for(response_pointer("/v1/Conversations", "get", "200"))
    with pytest.raises(ValidationError):
        listing.validate({"conversations": [{"sid": "CH-too-short"}], "meta": {}})
    with pytest.raises(ValidationError):
        listing.validate({"conversations": [], "meta": {"page": "zero"}})


def test_state_filter_survives_paging_and_is_checked(client, auth, sandbox):
    for state in ("closed", "active", "closed", "active", "closed"):
        assert client.post("/v1/Conversations", auth=auth, data={"State": state}).status_code == 201
    seen, url = [], "/v1/Conversations?State=closed&PageSize=1"
    while url:
        page = client.get(url, auth=auth).json
        seen += [c["state"] for c in page["conversations"]]
        url = page["meta"]["next_page_url"]
        url = url and url.removeprefix("https://conversations.twilio.com")
    assert seen == ["closed"] * 3
    assert client.get("/v1/Conversations?State=sleeping", auth=auth).status_code == 400
    assert client.post("/v1/Conversations", auth=auth, data={"State": "sleeping"}).status_code == 400


@pytest.mark.parametrize(
    "path, required",
    [
        ("/v1/Conversations", {}),
        ("/v1/Conversations/{sid}/Messages", {}),
        ("/v1/ParticipantConversations", {"Identity": "agent@example.com"}),  # bounds of its own: PageSize 1-50
    ],
)
def test_page_parameters_outside_the_specs_bounds_are_400(client, auth, sandbox, spec, path, required):
    sid = sandbox.create_conversation("Bob", "sms")["sid"]
    url = path.format(sid=sid)
    bounds = {
        p["name"]: p["schema"]
        for p in spec["paths"][path.replace("{sid}", "{ConversationSid}")]["get"]["parameters"]
        if p["name"] in ("PageSize", "Page")
    }
    page_size = bounds["PageSize"]
    for query in (
        {"PageSize": page_size["minimum"]},
        {"PageSize": page_size["maximum"]},
        {"Page": bounds["Page"]["minimum"]},
    ):
        assert client.get(url, auth=auth, query_string={**required, **query}).status_code == 200, query
    for query in (
        {"PageSize": page_size["minimum"] - 1},
        {"PageSize": page_size["maximum"] + 1},
        {"PageSize": "ten"},
        {"Page": bounds["Page"]["minimum"] - 1},
    ):
        answer = client.get(url, auth=auth, query_string={**required, **query})
        assert answer.status_code == 400 and answer.json["code"] == 20001 and answer.json["status"] == 400, query


def test_webhooks_name_the_conversations_own_messaging_service(client, auth, sandbox):
    other = "MG" + "1" * 32
    sid = client.post("/v1/Conversations", auth=auth, data={"MessagingServiceSid": other}).json["sid"]
    sandbox.add_participant(sid, messaging_binding={"address": "+15551234567", "proxy_address": "+15557654321"})
    params = sandbox.customer_sends_media(sid, OGG, "audio/ogg", "voice.ogg")
    assert params["MessagingServiceSid"] == other


def test_messages_page_and_order(client, auth, sandbox):
    sid = sandbox.create_conversation("Bob", "sms")["sid"]
    for n in range(5):
        assert (
            client.post(
                f"/v1/Conversations/{sid}/Messages", auth=auth, data={"Author": "system", "Body": f"m{n}"}
            ).status_code
            == 201
        )
    first = client.get(f"/v1/Conversations/{sid}/Messages", auth=auth, query_string={"PageSize": 2}).json
    assert [m["index"] for m in first["messages"]] == [0, 1]
    assert first["meta"]["previous_page_url"] is None
    bodies, page = [], first
    while True:
        bodies += [m["body"] for m in page["messages"]]
        next_url = page["meta"]["next_page_url"]
        if not next_url:
            break
        assert next_url.startswith("https://conversations.twilio.com/v1/Conversations/")
        parts = urlsplit(next_url)
        page = client.get(parts.path, query_string=parts.query, auth=auth).json
    assert bodies == ["m0", "m1", "m2", "m3", "m4"]
    desc = client.get(
        f"/v1/Conversations/{sid}/Messages", auth=auth, query_string={"Order": "desc", "PageSize": 2}
    ).json
    assert [m["body"] for m in desc["messages"]] == ["m4", "m3"]
    assert desc["meta"]["url"].endswith("?Order=desc&PageSize=2&Page=0")


def test_participant_conversations_lists_one_participants_conversations(client, auth, sandbox):
    mine = [sandbox.create_conversation(f"Mine {n}", "sms")["sid"] for n in range(3)]
    sandbox.create_conversation("Not mine", "whatsapp")
    for sid in mine:
        sandbox.add_participant(sid, identity="alice_40example_2Ecom")
    seen, url, query = [], "/v1/ParticipantConversations", {"Identity": "alice_40example_2Ecom", "PageSize": 2}
    while url:
        page = client.get(url, auth=auth, query_string=query).json
        seen += [c["conversation_sid"] for c in page["conversations"]]
        parts = urlsplit(page["meta"]["next_page_url"] or "")
        url, query = parts.path, parts.query  # the next page keeps the Identity filter
    assert seen == mine
    twilio = Client(sandbox.account_sid, sandbox.auth_token, http_client=WsgiHttpClient(sandbox.wsgi_app()))
    listed = twilio.conversations.v1.participant_conversations.list(identity="alice_40example_2Ecom", page_size=2)
    assert [c.conversation_sid for c in listed] == mine
    assert {c.participant_identity for c in listed} == {"alice_40example_2Ecom"}
    assert twilio.conversations.v1.participant_conversations.list(identity="nobody") == []
    # Twilio's description: "Only one parameter should be specified".
    for query in ({}, {"Identity": "alice_40example_2Ecom", "Address": "+15550001111"}):
        answer = client.get("/v1/ParticipantConversations", auth=auth, query_string=query)
        assert answer.status_code == 400 and answer.json["code"] == 20001, query


def test_participant_rules(client, auth, sandbox):
    sid = sandbox.create_conversation("Carol", "webchat")["sid"]
    url = f"/v1/Conversations/{sid}/Participants"
    assert client.post(url, auth=auth, data={"Identity": "agent@example.com"}).status_code == 201
    duplicate = client.post(url, auth=auth, data={"Identity": "agent@example.com"})
    assert duplicate.status_code == 409 and duplicate.json["code"] == 50433
    assert client.post(url, auth=auth, data={}).status_code == 400
    customer = sandbox.list_participants(sid)[0]
    assert customer["identity"].startswith("webchat-guest-") and customer["messaging_binding"] is None


# -- twilio-python as a client ------------------------------------------------------------------------------
class WsgiHttpClient(HttpClient):
    """Routes twilio-python's requests, whatever their Twilio host, into the sandbox app in-process."""

    def __init__(self, app):
        super().__init__(logging.getLogger("test.twilio"), is_async=False)
        self.test_client = app.test_client()

    def request(
        self, method, uri, params=None, data=None, headers=None, auth=None, timeout=None, allow_redirects=False
    ):
        parts = urlsplit(uri)
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        resp = self.test_client.open(
            parts.path,
            method=method,
            query_string=params or parts.query or None,
            data=data,
            headers=headers,
            base_url=f"{parts.scheme}://{parts.netloc}",
        )
        return TwilioResponse(resp.status_code, resp.get_data(as_text=True), dict(resp.headers))


def test_twilio_python_reads_and_writes_the_sandbox(sandbox, client, auth):
    twilio = Client(sandbox.account_sid, sandbox.auth_token, http_client=WsgiHttpClient(sandbox.wsgi_app()))
    conversations = twilio.conversations.v1.conversations
    conversation = conversations.create(friendly_name="Dora")
    assert conversation.sid.startswith("CH") and conversation.chat_service_sid == sandbox.chat_service_sid
    participant = conversations(conversation.sid).participants.create(
        messaging_binding_address="+15550002222", messaging_binding_proxy_address="+14155550100"
    )
    assert participant.messaging_binding["type"] == "sms"
    media_sid = upload(client, auth, sandbox).json["sid"]
    message = conversations(conversation.sid).messages.create(author="+15550002222", media_sid=media_sid)
    assert message.media[0]["sid"] == media_sid and message.participant_sid == participant.sid
    for n in range(4):
        conversations(conversation.sid).messages.create(body=f"n{n}")
    listed = conversations(conversation.sid).messages.list(page_size=2)  # follows next_page_url
    assert [m.index for m in listed] == [0, 1, 2, 3, 4]
    with pytest.raises(TwilioRestException) as raised:
        conversations(conversation.sid).messages.create(author="system", media_sid="ME" + "f" * 32)
    assert raised.value.status == 400 and raised.value.code == 50510


# -- media (MCS) --------------------------------------------------------------------------------------------
def test_mcs_upload_fetch_and_content_round_trip(client, auth, sandbox):
    resp = upload(client, auth, sandbox, content_type="audio/ogg; codecs=opus")
    assert resp.status_code == 201
    media = resp.json
    sid = media["sid"]
    assert sid.startswith("ME") and len(sid) == 34
    assert {
        k: media[k]
        for k in (
            "account_sid",
            "service_sid",
            "size",
            "content_type",
            "filename",
            "category",
            "message_sid",
            "channel_sid",
        )
    } == {
        "account_sid": sandbox.account_sid,
        "service_sid": sandbox.chat_service_sid,
        "size": len(OGG),
        "content_type": "audio/ogg; codecs=opus",
        "filename": "voice.ogg",
        "category": "media",
        "message_sid": None,
        "channel_sid": None,
    }
    path = f"/v1/Services/{sandbox.chat_service_sid}/Media/{sid}"
    assert media["links"]["content"] == f"{path}/Content"
    for key in ("date_created", "date_upload_updated", "date_updated", "author", "url"):
        assert key in media

    fetched = client.get(path, auth=auth)
    assert fetched.status_code == 200 and fetched.json["sid"] == sid
    content = client.get(f"{path}/Content", auth=auth)
    assert content.status_code == 200 and content.data == OGG
    assert content.headers["Content-Type"] == "audio/ogg; codecs=opus"
    assert sandbox.media_bytes(sid) == OGG

    assert client.get(path).status_code == 401
    assert client.get(f"{path}/Content").status_code == 401

    temporary = fetched.json["links"]["content_direct_temporary"]
    assert temporary.startswith("http://localhost/")  # built from the caller's own host
    parts = urlsplit(temporary)
    direct = client.get(parts.path, query_string=parts.query)  # no auth at all
    assert direct.status_code == 200 and direct.data == OGG
    # Pre-signed storage refuses a second auth mechanism: a client must not send its credentials along.
    assert client.get(parts.path, query_string=parts.query, auth=auth).status_code == 400
    forged = parts.query.replace("Signature=", "Signature=x")
    assert client.get(parts.path, query_string=forged).status_code == 401
    other = client.post(
        f"/v1/Services/{sandbox.chat_service_sid}/Media", auth=auth, data=b"x", headers={"Content-Type": "audio/mpeg"}
    ).json["sid"]
    assert client.get(parts.path.replace(sid, other), query_string=parts.query).status_code == 401


def test_temporary_link_expires(client, auth, sandbox, monkeypatch):
    monkeypatch.setattr(sandbox_module, "TEMP_URL_TTL_S", -1)
    temporary = upload(client, auth, sandbox).json["links"]["content_direct_temporary"]
    parts = urlsplit(temporary)
    assert client.get(parts.path, query_string=parts.query).status_code == 401


def test_mcs_content_answers_a_range_as_object_storage_does(client, auth, sandbox):
    """MCS serves the bytes from object storage: one range is answered 206 (cut at the file's end), a range past
    the end 416, several ranges or a malformed header with the whole file (S3's answers)."""
    sid = upload(client, auth, sandbox, content_type="audio/ogg").json["sid"]
    path = f"/v1/Services/{sandbox.chat_service_sid}/Media/{sid}"
    head = client.get(f"{path}/Content", auth=auth, headers={"Range": "bytes=0-3"})
    assert (head.status_code, head.data, head.headers["Content-Range"]) == (206, OGG[:4], f"bytes 0-3/{len(OGG)}")
    whole = client.get(f"{path}/Content", auth=auth, headers={"Range": f"bytes=0-{len(OGG) + 100}"})
    assert (whole.status_code, whole.data) == (206, OGG)
    past = client.get(f"{path}/Content", auth=auth, headers={"Range": f"bytes={len(OGG)}-"})
    assert past.status_code == 416
    for ignored in ("bytes=0-1,4-5", "lines=1-2"):
        answer = client.get(f"{path}/Content", auth=auth, headers={"Range": ignored})
        assert (answer.status_code, answer.data) == (200, OGG)


def test_mcs_accepts_filename_via_header_and_multipart(client, auth, sandbox):
    url = f"/v1/Services/{sandbox.chat_service_sid}/Media"
    by_header = client.post(
        url,
        auth=auth,
        data=OGG,
        headers={"Content-Type": "audio/mpeg", "Content-Disposition": 'attachment; filename="note.mp3"'},
    )
    assert by_header.status_code == 201 and by_header.json["filename"] == "note.mp3"
    multipart = client.post(
        url,
        auth=auth,
        content_type="multipart/form-data",
        data={"Media": (io.BytesIO(OGG), "clip.ogg", "audio/ogg"), "FileName": "clip.ogg"},
    )
    assert multipart.status_code == 201
    assert (multipart.json["filename"], multipart.json["content_type"], multipart.json["size"]) == (
        "clip.ogg",
        "audio/ogg",
        len(OGG),
    )
    assert sandbox.media_bytes(multipart.json["sid"]) == OGG


def test_mcs_rejects_empty_and_oversized_uploads(client, auth, sandbox, monkeypatch):
    assert upload(client, auth, sandbox, data=b"").status_code == 400
    monkeypatch.setattr(sandbox_module, "MAX_MEDIA_BYTES", 10)
    too_big = upload(client, auth, sandbox, data=b"x" * 11)
    assert too_big.status_code == 413 and too_big.json["code"] == 50512
    assert upload(client, auth, sandbox, data=b"x" * 10).status_code == 201


def test_message_with_media_sid_carries_the_media(client, auth, sandbox):
    sid = sandbox.create_conversation("Eve", "whatsapp")["sid"]
    media = upload(client, auth, sandbox).json
    resp = client.post(
        f"/v1/Conversations/{sid}/Messages", auth=auth, data={"Author": "agent@example.com", "MediaSid": media["sid"]}
    )
    assert resp.status_code == 201
    assert resp.json["body"] is None
    assert resp.json["media"] == [
        {
            "sid": media["sid"],
            "content_type": "audio/ogg",
            "filename": "voice.ogg",
            "size": len(OGG),
            "category": "media",
        }
    ]
    attached = client.get(f"/v1/Services/{sandbox.chat_service_sid}/Media/{media['sid']}", auth=auth).json
    assert (attached["message_sid"], attached["channel_sid"]) == (resp.json["sid"], sid)

    unknown = client.post(
        f"/v1/Conversations/{sid}/Messages",
        auth=auth,
        data={"Author": "agent@example.com", "MediaSid": "ME" + "0" * 32},
    )
    assert unknown.status_code == 400
    assert unknown.json["code"] == 50510 and unknown.json["more_info"].endswith("/50510")
    assert len(sandbox.list_messages(sid)) == 1  # the failed create left nothing behind


def test_state_is_shared_between_sandboxes_on_one_file(tmp_path):
    writer = Sandbox(str(tmp_path / "shared.db"))
    reader = Sandbox(str(tmp_path / "shared.db"))
    conversation = writer.create_conversation("Frank", "sms")
    params = writer.customer_sends_media(conversation["sid"], OGG, "audio/amr", "note.amr")
    http = reader.wsgi_app().test_client()
    auth = (reader.account_sid, reader.auth_token)
    message = http.get(f"/v1/Conversations/{conversation['sid']}/Messages/{params['MessageSid']}", auth=auth).json
    assert message["media"][0]["content_type"] == "audio/amr"
    assert reader.media_bytes(message["media"][0]["sid"]) == OGG
    assert reader.webhook_params_for(conversation["sid"], params["MessageSid"]) == params


def test_concurrent_writers_get_distinct_indexes(sandbox):
    sid = sandbox.create_conversation("Gail", "sms")["sid"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: sandbox.customer_sends_media(sid, b"%d" % n, "audio/mpeg", f"{n}.mp3"), range(24)))
    assert sorted(m["index"] for m in sandbox.list_messages(sid)) == list(range(24))


# -- webhook params and signatures --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "channel, source", [("whatsapp", "WHATSAPP"), ("sms", "SMS"), ("messenger", "MESSENGER"), ("webchat", "SDK")]
)
def test_customer_media_yields_onmessageadded_params(sandbox, channel, source):
    conversation = sandbox.create_conversation("Hana", channel)
    customer = sandbox.list_participants(conversation["sid"])[0]
    params = sandbox.customer_sends_media(conversation["sid"], OGG, "audio/ogg", "voice.ogg", body="listen")
    message = sandbox.list_messages(conversation["sid"])[0]
    author = customer["messaging_binding"]["address"] if customer["messaging_binding"] else customer["identity"]
    expected = {
        "AccountSid": sandbox.account_sid,
        "EventType": "onMessageAdded",
        "Source": source,
        "ConversationSid": conversation["sid"],
        "MessageSid": message["sid"],
        "ChatServiceSid": sandbox.chat_service_sid,
        "Index": "0",
        "DateCreated": message["date_created"].replace("Z", ".000Z"),
        "Body": "listen",
        "Author": author,
        "ParticipantSid": customer["sid"],
        "Attributes": "{}",
        "RetryCount": "0",
        "Media": json.dumps(
            [
                {
                    "Sid": message["media"][0]["sid"],
                    "ContentType": "audio/ogg",
                    "Filename": "voice.ogg",
                    "Size": len(OGG),
                    "Category": "media",
                }
            ]
        ),
    }
    if source == "SDK":
        expected["ClientIdentity"] = author
    else:
        expected["MessagingServiceSid"] = conversation["messaging_service_sid"]
    assert params == expected
    assert all(isinstance(v, str) for v in params.values())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", params["DateCreated"])
    assert sandbox.webhook_params_for(conversation["sid"], message["sid"]) == params
    if channel == "whatsapp":
        assert author.startswith("whatsapp:+1555")


def test_media_only_message_has_no_body_param(sandbox):
    sid = sandbox.create_conversation("Ivan", "whatsapp")["sid"]
    assert "Body" not in sandbox.customer_sends_media(sid, OGG, "audio/ogg", "voice.ogg")


def test_signature_matches_twilio_validator(sandbox):
    url = "https://example.com/twilio/conversations?x=1"
    params = {"EventType": "onMessageAdded", "Body": "héllo", "Index": "3"}
    signature = sandbox.sign(url, params)
    validator = RequestValidator(sandbox.auth_token)
    assert validator.validate(url, params, signature)
    assert not validator.validate(url, {**params, "Index": "4"}, signature)
    assert not RequestValidator("0" * 32).validate(url, params, signature)


# -- webhooks over HTTP -------------------------------------------------------------------------------------
@pytest.fixture
def webhook_receiver():
    """A plain HTTP server standing in for the service: records each delivery and answers from `answers`
    ((status, body) pairs, first come first served; 200 with no body once they run out)."""
    received: list[dict] = []
    answers: list[tuple[int, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append({"path": self.path, "headers": dict(self.headers), "params": dict(parse_qsl(body))})
            status, answer = answers.pop(0) if answers else (200, b"")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received, answers
    server.shutdown()
    server.server_close()


def test_rest_messages_fire_webhook_only_when_enabled(client, auth, sandbox, webhook_receiver):
    base, received, _ = webhook_receiver
    hook = f"{base}/webhooks/conversations"
    sandbox.set_webhook(hook)
    assert Sandbox(sandbox.db_path).webhook_urls == {"post_url": hook, "pre_url": None}  # persisted
    sid = sandbox.create_conversation("Jo", "webchat")["sid"]
    url = f"/v1/Conversations/{sid}/Messages"
    assert client.post(url, auth=auth, data={"Author": "agent@example.com", "Body": "silent"}).status_code == 201
    assert (
        client.post(
            url, auth=auth, data={"Body": "also silent"}, headers={"X-Twilio-Webhook-Enabled": "false"}
        ).status_code
        == 201
    )
    resp = client.post(
        url,
        auth=auth,
        data={"Author": "agent@example.com", "Body": "loud"},
        headers={"X-Twilio-Webhook-Enabled": "true"},
    )
    assert resp.status_code == 201
    sandbox.flush_webhooks()
    assert len(received) == 1
    hit = received[0]
    assert hit["path"] == "/webhooks/conversations"
    assert hit["params"] == sandbox.webhook_params_for(sid, resp.json["sid"])
    assert hit["params"]["Source"] == "API" and hit["params"]["Body"] == "loud"
    assert RequestValidator(sandbox.auth_token).validate(hook, hit["params"], hit["headers"]["X-Twilio-Signature"])
    assert sandbox.webhook_deliveries()[-1]["status"] == 200


def test_failed_webhook_never_breaks_the_rest_call(client, auth, sandbox):
    sandbox.set_webhook("http://127.0.0.1:9/unreachable")  # discard port: connection refused
    sid = sandbox.create_conversation("Kim", "sms")["sid"]
    resp = client.post(
        f"/v1/Conversations/{sid}/Messages", auth=auth, data={"Body": "x"}, headers={"X-Twilio-Webhook-Enabled": "true"}
    )
    assert resp.status_code == 201
    sandbox.flush_webhooks()
    delivery = sandbox.webhook_deliveries()[-1]
    assert delivery["status"] is None and delivery["error"]


def test_customer_sends_media_can_deliver(sandbox, webhook_receiver):
    base, received, _ = webhook_receiver
    sandbox.set_webhook(f"{base}/hook")
    sid = sandbox.create_conversation("Lee", "whatsapp")["sid"]
    params = sandbox.customer_sends_media(sid, OGG, "audio/ogg", "v.ogg", deliver=True)
    assert [r["params"] for r in received] == [params]


def test_post_event_is_retried_only_as_configured(sandbox, webhook_receiver):
    """Twilio's default is no retry; with post_webhook_retry_count it retries timeouts, 429, 503 and 504,
    each attempt with RetryCount one higher and its own signature."""
    base, received, answers = webhook_receiver
    hook = f"{base}/hook"
    sid = sandbox.create_conversation("Lee", "whatsapp")["sid"]
    sandbox.set_webhook(hook)
    answers[:] = [(503, b"")]
    sandbox.customer_sends_media(sid, OGG, "audio/ogg", "v.ogg", deliver=True)
    assert len(received) == 1  # no retry by default: the event is gone

    received.clear()
    sandbox.set_webhook(hook, post_retry_count=3)
    answers[:] = [(503, b""), (429, b""), (200, b"{}")]
    params = sandbox.customer_sends_media(sid, OGG, "audio/ogg", "v.ogg", deliver=True)
    assert [r["params"]["RetryCount"] for r in received] == ["0", "1", "2"]
    assert all(r["params"] == {**params, "RetryCount": r["params"]["RetryCount"]} for r in received)
    validator = RequestValidator(sandbox.auth_token)
    assert all(validator.validate(hook, r["params"], r["headers"]["X-Twilio-Signature"]) for r in received)
    assert [d["status"] for d in sandbox.webhook_deliveries()[-3:]] == [503, 429, 200]

    received.clear()
    answers[:] = [(500, b""), (200, b"")]
    sandbox.customer_sends_media(sid, OGG, "audio/ogg", "v.ogg", deliver=True)
    assert len(received) == 1  # a 500 is not one Twilio retries

    received.clear()
    sandbox.set_webhook(hook, post_retry_count=-1)
    answers[:] = [(503, b"")]
    sandbox.customer_sends_media(sid, OGG, "audio/ogg", "v.ogg", deliver=True)
    assert len(received) == 1  # a negative count is no retries, and the one delivery still happens


def test_agent_sdk_send_asks_the_pre_event_hook_first(client, auth, sandbox, webhook_receiver):
    base, received, answers = webhook_receiver
    sandbox.set_webhook(f"{base}/post", pre_url=f"{base}/pre")
    sid = sandbox.create_conversation("Ana", "whatsapp")["sid"]
    agent = sandbox.add_participant(sid, identity="agent_40example_2Ecom")

    answers[:] = [(403, b'{"error": "no"}')]
    rejected = sandbox.agent_sends_media(sid, "agent_40example_2Ecom", OGG, "audio/ogg", "reply.ogg")
    assert rejected == {"published": False, "pre_status": 403, "message_sid": None, "params": None}
    (pre,) = received
    assert pre["path"] == "/pre"
    params = pre["params"]
    assert params["EventType"] == "onMessageAdd" and "MessageSid" not in params and "Index" not in params
    assert (params["Source"], params["ClientIdentity"], params["Author"], params["ParticipantSid"]) == (
        "SDK",
        "agent_40example_2Ecom",
        "agent_40example_2Ecom",
        agent["sid"],
    )
    assert json.loads(params["Media"])[0]["ContentType"] == "audio/ogg"
    assert RequestValidator(sandbox.auth_token).validate(f"{base}/pre", params, pre["headers"]["X-Twilio-Signature"])
    assert sandbox.list_messages(sid) == []  # nothing published, no post-event

    received.clear()
    answers[:] = [(200, b'{"body": "changed by the hook"}')]
    published = sandbox.agent_sends_media(sid, "agent_40example_2Ecom", OGG, "audio/ogg", "reply.ogg", body="hi")
    assert published["published"] and published["pre_status"] == 200
    assert [r["path"] for r in received] == ["/pre", "/post"]
    assert received[1]["params"] == published["params"]
    assert published["params"]["MessageSid"] == published["message_sid"]
    (message,) = sandbox.list_messages(sid)
    assert message["body"] == "changed by the hook" and message["author"] == "agent_40example_2Ecom"

    sandbox.set_webhook(f"{base}/post", pre_url="http://127.0.0.1:9/unreachable")
    assert sandbox.agent_sends_media(sid, "agent_40example_2Ecom", OGG, "audio/ogg", "r.ogg")["published"]
    with pytest.raises(LookupError):
        sandbox.agent_sends_media(sid, "stranger", OGG, "audio/ogg", "r.ogg")  # the SDK only lets participants in


def test_unattached_media_is_garbage_collected_after_five_minutes(client, auth, sandbox):
    import sqlite3
    import time

    sid = sandbox.create_conversation("Gus", "sms")["sid"]
    kept, lost = upload(client, auth, sandbox).json["sid"], upload(client, auth, sandbox).json["sid"]
    messages = f"/v1/Conversations/{sid}/Messages"
    assert client.post(messages, auth=auth, data={"MediaSid": kept}).status_code == 201
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 301))
    with sqlite3.connect(sandbox.db_path) as conn:
        conn.execute("UPDATE media SET date_created = ?", (old,))

    refused = client.post(messages, auth=auth, data={"MediaSid": lost})
    assert refused.status_code == 400 and refused.json["code"] == 50510
    media = f"/v1/Services/{sandbox.chat_service_sid}/Media"
    assert client.get(f"{media}/{lost}", auth=auth).status_code == 404
    assert client.get(f"{media}/{kept}", auth=auth).status_code == 200  # attached in time: kept


# -- Flex tokens (IAM) --------------------------------------------------------------------------------------
def test_token_validation(client, auth, sandbox):
    url = f"/v1/Accounts/{sandbox.account_sid}/Tokens/validate"
    # Flex escapes the user's name into the identity; realm_user_id keeps it as the user typed it.
    token = sandbox.issue_token("agent_40example_2Ecom", roles=("agent", "supervisor"))
    valid = client.post(url, auth=auth, json={"token": token})
    assert valid.status_code == 200
    body = valid.json
    assert body["valid"] is True and body["code"] == 0 and body["message"] is None
    assert body["identity"] == "agent_40example_2Ecom" and body["roles"] == ["agent", "supervisor"]
    assert body["worker_sid"].startswith("WK") and body["expiration"].endswith("Z")
    assert body["realm_user_id"] == "agent@example.com"
    assert sandbox.issue_token("agent_40example_2Ecom") != token
    again = client.post(url, auth=auth, json={"token": sandbox.issue_token("agent_40example_2Ecom")}).json
    assert again["worker_sid"] == body["worker_sid"]  # one worker per user

    expired = client.post(url, auth=auth, json={"token": sandbox.issue_token("old@example.com", ttl_s=-1)})
    unknown = client.post(url, auth=auth, json={"token": "not-a-token"})
    for resp, code in ((expired, 20104), (unknown, 20101)):
        assert resp.status_code == 200  # IAM answers 200 and puts the verdict in `valid`
        assert resp.json["valid"] is False and resp.json["code"] == code and resp.json["message"]
        assert resp.json["identity"] is None and resp.json["roles"] is None

    assert client.post(url, json={"token": token}).status_code == 401
    assert client.post(url, auth=auth, json={}).status_code == 400
    assert client.post(url, auth=auth, json={"token": ["not", "a", "string"]}).status_code == 400
    other_account = f"/v1/Accounts/AC{'0' * 32}/Tokens/validate"
    assert client.post(other_account, auth=auth, json={"token": token}).status_code == 404


def test_api_keys_reach_rest_but_not_iam(client, sandbox):
    key = sandbox.create_api_key()
    assert client.get("/v1/Conversations", auth=key).status_code == 200
    assert upload(client, key, sandbox).status_code == 201
    assert client.get("/v1/Conversations", auth=(key[0], "wrong secret")).status_code == 401
    assert client.get("/v1/Conversations", auth=("SK" + "0" * 32, key[1])).status_code == 401
    token = sandbox.issue_token("agent_40example_2Ecom")
    validate = f"/v1/Accounts/{sandbox.account_sid}/Tokens/validate"
    assert client.post(validate, auth=key, json={"token": token}).status_code == 401
    assert client.post(validate, auth=(sandbox.account_sid, sandbox.auth_token), json={"token": token}).json["valid"]


# -- fault injection ----------------------------------------------------------------------------------------
def test_fail_next_answers_twilio_errors_then_recovers(client, auth, sandbox):
    sid = sandbox.create_conversation("Mo", "sms")["sid"]
    sandbox.fail_next(r"/Messages$", 429, count=2, retry_after=7)
    url = f"/v1/Conversations/{sid}/Messages"
    assert client.get(f"/v1/Conversations/{sid}", auth=auth).status_code == 200  # path does not match
    for _ in range(2):
        resp = client.get(url, auth=auth)
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
        assert resp.json == {
            "code": 20429,
            "message": "Too Many Requests",
            "more_info": "https://www.twilio.com/docs/errors/20429",
            "status": 429,
        }
    assert client.get(url, auth=auth).status_code == 200

    sandbox.fail_next("/Media", 503)
    failed = upload(client, auth, sandbox)
    assert failed.status_code == 503 and "Retry-After" not in failed.headers
    assert upload(client, auth, sandbox).status_code == 201
