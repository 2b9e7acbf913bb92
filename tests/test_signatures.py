"""The webhook signature fast path accepts exactly what Twilio's own RequestValidator accepts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from webhook_app.twilio.signatures import form_signature, is_valid_form_signature

TOKEN = "12345678901234567890123456789012"
urls = st.sampled_from([
    "https://example.com/twilio/conversations/post-event",
    "https://example.com:443/twilio/conversations/post-event",
    "http://127.0.0.1:5000/twilio/conversations/post-event?x=1&y=%20",
    "http://localhost/twilio/conversations/post-event",
    "https://user@example.com:8443/path?a=b",
])
names = st.text(min_size=1, max_size=12)
values = st.text(max_size=30)
forms = st.lists(st.tuples(names, values), max_size=8).map(MultiDict)
algorithms = st.sampled_from(["HMAC_SHA1", "HMAC_SHA256", "hmac_sha256"])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(url=urls, form=forms, algorithm=algorithms, signed_with=st.sampled_from(["as is", "port", "no port", "other"]),
       tamper=st.booleans())
def test_fast_path_agrees_with_twilios_validator(url, form, algorithm, signed_with, tamper):
    twilio = RequestValidator(TOKEN)
    from urllib.parse import urlparse

    from twilio.request_validator import add_port, remove_port

    signing_url = {"as is": url, "port": add_port(urlparse(url)), "no port": remove_port(urlparse(url)),
                   "other": url + "x"}[signed_with]
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
