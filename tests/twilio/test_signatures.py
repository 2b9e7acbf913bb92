"""The webhook signature fast path accepts exactly what Twilio's own RequestValidator accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from tests.helpers.audio_samples import make_audio
from tests.helpers.service import audio_rows, deployed_service, run_jobs
from webhook_app.sandbox import Sandbox
from webhook_app.twilio.signatures import form_signature, is_valid_form_signature

TOKEN = "12345678901234567890123456789012"
urls = st.sampled_from(
    [
        "https://example.com/twilio/conversations/post-event",
        "https://example.com:443/twilio/conversations/post-event",
        "http://127.0.0.1:5000/twilio/conversations/post-event?x=1&y=%20",
        "http://localhost/twilio/conversations/post-event",
        "https://user@example.com:8443/path?a=b",
    ]
)
names = st.text(min_size=1, max_size=12)
values = st.text(max_size=30)
forms = st.lists(st.tuples(names, values), max_size=8).map(MultiDict)
algorithms = st.sampled_from(["HMAC_SHA1", "HMAC_SHA256", "hmac_sha256"])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    url=urls,
    form=forms,
    algorithm=algorithms,
    signed_with=st.sampled_from(["as is", "port", "no port", "other"]),
    tamper=st.booleans(),
)
def test_fast_path_agrees_with_twilios_validator(url, form, algorithm, signed_with, tamper):
    twilio = RequestValidator(TOKEN)
    from urllib.parse import urlparse

    from twilio.request_validator import add_port, remove_port

    signing_url = {
        "as is": url,
        "port": add_port(urlparse(url)),
        "no port": remove_port(urlparse(url)),
        "other": url + "x",
    }[signed_with]
    signature = twilio.compute_signature(signing_url, form, algorithm)
    if tamper:
        signature = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    expected = twilio.validate(url, form, signature, algorithm=algorithm)
    assert is_valid_form_signature(TOKEN, url, form, signature, algorithm) == expected
    assert expected == (signed_with != "other" and not tamper)


def test_signature_matches_twilios_for_a_dict_and_repeated_values():
    twilio = RequestValidator(TOKEN)
    url = "https://example.com/hook"
    params = {"Body": "hi", "Media": '[{"Sid": "ME1"}]', "EventType": "onMessageAdded"}
    assert form_signature(TOKEN, url, params) == twilio.compute_signature(url, params)
    repeated = MultiDict([("b", "2"), ("a", "z"), ("b", "1"), ("b", "2")])
    assert form_signature(TOKEN, url, repeated) == twilio.compute_signature(url, repeated)


def test_a_signature_that_is_not_ascii_is_refused_not_crashed():
    assert not is_valid_form_signature(TOKEN, "https://example.com/hook", {"a": "1"}, "sïgnature\udcff")


# Every character that means something in a form body, plus plain and non-ASCII text.
form_bodies = st.lists(
    st.sampled_from(list("&=+%;aZ09-_.~ é€") + ["%41", "%2B", "%C3%A9", "%e9", "%ZZ"]), max_size=40
).map("".join)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(body=form_bodies)
def test_form_parser_agrees_with_werkzeugs(body):
    from urllib.parse import parse_qsl

    import werkzeug.urls  # noqa: F401 - registers werkzeug's "werkzeug.url_quote" error handler
    from werkzeug.test import EnvironBuilder

    from webhook_app.web.wrappers import Request, parse_form

    assert parse_form(body) == parse_qsl(body, keep_blank_values=True, errors="werkzeug.url_quote")

    def environ():
        return EnvironBuilder(
            method="POST", data=body.encode(), content_type="application/x-www-form-urlencoded"
        ).get_environ()

    assert Request(environ()).form_fields == list(Request(environ()).form.items(multi=True))


def test_requested_url_is_the_request_target_as_sent_with_the_proxys_scheme_and_host(app):
    from werkzeug.test import EnvironBuilder

    from webhook_app.web.wrappers import Request

    environ = EnvironBuilder(
        path="/twilio/conversations/post-event", query_string="a=%7E&b=c%20d", base_url="http://internal:5000"
    ).get_environ()
    environ["RAW_URI"] = "/twilio/conversations/post-event?a=%7E&b=c%20d"
    with app.app_context():
        assert Request(environ).requested_url == "http://internal:5000/twilio/conversations/post-event?a=%7E&b=c%20d"
        # What ProxyFix makes of Heroku's X-Forwarded-Proto/Host: the URL Twilio signed.
        proxied = dict(environ, **{"wsgi.url_scheme": "https", "HTTP_HOST": "audio.example.com"})
        assert (
            Request(proxied).requested_url == "https://audio.example.com/twilio/conversations/post-event?a=%7E&b=c%20d"
        )
        del environ["RAW_URI"]  # a server that does not pass the request target on: werkzeug's URL
        assert Request(environ).requested_url == Request(environ).url


def test_webhook_behind_a_proxy_is_checked_against_the_public_url(app, sandbox, another_app):
    from tests.helpers.webhooks import load_fixture, sids

    assert app.config["PROXY_FIX_HOPS"] == 0  # the default: no proxy trusted unless configured
    app = another_app(PROXY_FIX_HOPS=1)  # one router in front (Heroku's)
    params = load_fixture("onMessageAdded__whatsapp_voice_note", **sids(sandbox))
    public = "https://audio.example.com/twilio/conversations/post-event"
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "audio.example.com",
        "X-Forwarded-Port": "443",
        "X-Twilio-Signature": sandbox.sign(public, params),
    }
    client = app.test_client()
    assert client.post("/twilio/conversations/post-event", data=params, headers=headers).status_code == 200
    headers["X-Twilio-Signature"] = sandbox.sign("http://localhost/twilio/conversations/post-event", params)
    assert client.post("/twilio/conversations/post-event", data=params, headers=headers).status_code == 403


def test_an_unsigned_json_post_is_403_and_a_huge_one_is_refused_before_it_is_read(client):
    """twilio's validator takes a JSON body without bodySHA256 for a form and crashes; such a request was not
    signed by Twilio. And the body is read before the signature can be checked: not without a limit."""
    for path in ("/twilio/conversations/post-event", "/twilio/conversations/pre-event"):
        response = client.post(path, data="{}", content_type="application/json", headers={"X-Twilio-Signature": "x"})
        assert response.status_code == 403, (path, response.get_data(as_text=True))
    huge = client.post(
        "/twilio/conversations/post-event",
        data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        content_type="application/json",
        headers={"X-Twilio-Signature": "x"},
    )
    assert huge.status_code == 413


def test_a_signed_form_up_to_the_webhook_cap_is_read(client, sandbox):
    """1 MiB for every webhook body, forms included (Flask's default would stop a form at 500 kB)."""
    url = "http://localhost/twilio/conversations/post-event"
    for size, expected in ((700_000, 200), (1_100_000, 413)):
        params = {"EventType": "onConversationUpdated", "Attributes": "x" * size}
        response = client.post(
            "/twilio/conversations/post-event", data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)}
        )
        assert response.status_code == expected, size


# -- the service as deployed: Twilio credentials, an API key for REST, no sandbox ------------------------------
@pytest.fixture
def deployed(app, database_url, queue_name, tmp_path):
    """Twilio is a sandbox on its own port, reached over HTTP as real Twilio would be. `app` is requested for its
    clean database. The API key is what REST calls use; webhooks stay signed with the account's auth token."""
    remote = Sandbox(str(tmp_path / "remote-twilio.db"))
    key_sid, key_secret = remote.create_api_key()
    with deployed_service(
        remote,
        database_url,
        REDIS_URL=os.environ.get("TEST_REDIS_URL") or None,
        RQ_QUEUE=queue_name,
        TWILIO_API_KEY_SID=key_sid,
        TWILIO_API_KEY_SECRET=key_secret,
    ) as service:
        yield service, remote, key_secret


@pytest.mark.parametrize("path", ["/twilio/conversations/post-event", "/twilio/conversations/pre-event"])
def test_deployed_service_takes_only_webhooks_signed_with_the_auth_token(deployed, path, tmp_path):
    service, remote, key_secret = deployed
    client = service.test_client()
    conversation = remote.create_conversation("Customer", "whatsapp")["sid"]
    voice = make_audio(tmp_path / "note.ogg", "whatsapp_ogg", seconds=1.0)
    params = remote.customer_sends_media(conversation, Path(voice).read_bytes(), "audio/ogg", "note.ogg")
    if path.endswith("pre-event"):  # the same message before it exists: onMessageAdd
        params = {k: v for k, v in params.items() if k not in ("MessageSid", "Index")} | {"EventType": "onMessageAdd"}
    url = "http://localhost" + path

    refused = {
        "unsigned": {},
        "another account's token": {"X-Twilio-Signature": RequestValidator("f" * 32).compute_signature(url, params)},
        "the API key's secret": {"X-Twilio-Signature": RequestValidator(key_secret).compute_signature(url, params)},
        "another URL": {"X-Twilio-Signature": remote.sign("http://localhost/elsewhere", params)},
    }
    for why, headers in refused.items():
        response = client.post(path, data=params, headers=headers)
        assert response.status_code == 403, why
        assert response.get_json()["error"]["code"] == "invalid_signature", why
    assert audio_rows(service) == []

    accepted = client.post(path, data=params, headers={"X-Twilio-Signature": remote.sign(url, params)})
    assert accepted.status_code == 200
    if path.endswith("post-event"):
        run_jobs(service)  # downloads from "Twilio's" MCS with the API key
        (row,) = audio_rows(service)
        assert (row.status, row.message_sid) == ("ready", params["MessageSid"])
