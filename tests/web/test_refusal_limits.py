"""Limits on refused attempts (webhook_app/web/ratelimit.py, flex_auth.py): a client guessing tokens is told to
wait and costs no IAM calls, counted per client address (believed from a proxy only when one is configured) and
shared by every web process."""

import pytest
from redis import exceptions as redis_errors
from sqlalchemy.exc import OperationalError

from tests.helpers.conversations import conversation_with_agent
from tests.helpers.service import record_calls
from webhook_app.config import Config
from webhook_app.runtime import outages
from webhook_app.web.flex_auth import REFUSED_TOKENS


@pytest.fixture
def iam_calls(app, monkeypatch):
    """Every token the service asks Twilio IAM about."""
    return record_calls(monkeypatch, app.extensions["twilio"], "validate_flex_token")


def test_a_refused_token_is_not_asked_about_twice(client, iam_calls):
    conversation_url = "/api/v1/conversations/CH" + "a" * 32 + "/audio"
    for _ in range(3):
        response = client.get(conversation_url, headers={"Authorization": "Bearer not-a-flex-token"})
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_token"
    assert iam_calls == ["not-a-flex-token"]


def test_a_client_guessing_tokens_is_told_to_wait_and_costs_no_more_iam_calls(client, iam_calls):
    conversation_url = "/api/v1/conversations/CH" + "a" * 32 + "/audio"
    guesser = {"REMOTE_ADDR": "203.0.113.7"}
    for number in range(REFUSED_TOKENS.limit):
        response = client.get(
            conversation_url, headers={"Authorization": f"Bearer guess-{number}"}, environ_base=guesser
        )
        assert response.status_code == 401
    response = client.get(conversation_url, headers={"Authorization": "Bearer guess-next"}, environ_base=guesser)
    assert response.status_code == 429 and response.get_json()["error"]["code"] == "too_many_invalid_tokens"
    assert 0 < int(response.headers["Retry-After"]) <= REFUSED_TOKENS.window_s
    assert len(iam_calls) == REFUSED_TOKENS.limit  # 300 guesses were 300 IAM calls before

    other = client.get(
        conversation_url, headers={"Authorization": "Bearer another"}, environ_base={"REMOTE_ADDR": "198.51.100.1"}
    )
    assert other.status_code == 401  # one client's guessing does not lock out the others


def test_admin_sign_in_guesses_are_limited_too(client, iam_calls):
    for number in range(REFUSED_TOKENS.limit + 1):
        response = client.get("/api/v1/admin/audit", headers={"Authorization": f"Bearer admin-guess-{number}"})
    assert response.status_code == 429
    assert len(iam_calls) == REFUSED_TOKENS.limit


def guess(client, number: int, **headers):
    headers["Authorization"] = f"Bearer guess-{number}"
    return client.get("/api/v1/conversations/CH" + "a" * 32 + "/audio", headers=headers).status_code


def test_forwarded_for_is_not_believed_without_a_proxy_in_front(client, iam_calls):
    """The default trusts no proxy: 40 guesses, each from an address of its own in X-Forwarded-For, are one client."""
    answers = [guess(client, n, **{"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(40)]
    limit = REFUSED_TOKENS.limit
    assert answers == [401] * limit + [429] * (40 - limit)  # 40 × 401 before
    assert len(iam_calls) == limit  # 40 IAM calls before


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(another_app):
    client = another_app(PROXY_FIX_HOPS=1).test_client()
    # The router appends the address it saw; what the client sent before it is the client's say.
    guesser = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    assert {guess(client, n, **guesser) for n in range(REFUSED_TOKENS.limit)} == {401}
    assert guess(client, 99, **guesser) == 429
    assert guess(client, 100, **{"X-Forwarded-For": "10.9.9.9, 198.51.100.1"}) == 401


def test_web_processes_share_the_count_of_refused_tokens(app, another_app):
    """Two apps on one database (and Redis, when tests have it): two gunicorn workers' worth."""
    clients = [app.test_client(), another_app().test_client()]
    assert {guess(clients[n % 2], n) for n in range(REFUSED_TOKENS.limit)} == {401}
    assert [guess(one, 99) for one in clients] == [429, 429]  # each process allowed 10 before


def test_on_heroku_its_router_is_believed_unless_told_otherwise(monkeypatch, another_app, caplog):
    """Heroku (DYNO set) always has its router in front: believing no hop there would make every client the router,
    and one client's refused tokens would lock every agent out."""
    monkeypatch.setenv("DYNO", "web.1")
    assert Config().PROXY_FIX_HOPS == 1
    monkeypatch.setenv("PROXY_FIX_HOPS", "0")
    assert Config().PROXY_FIX_HOPS == 0
    another_app(PROXY_FIX_HOPS=0)
    assert "set PROXY_FIX_HOPS=1" in caplog.text


def test_valid_tokens_get_in_while_the_store_of_the_limits_is_down(client, app, sandbox, agent_token, monkeypatch):
    """The limits fail open: an outage of Redis (or the database) must not stop agents whose tokens are valid."""
    limiter = app.extensions["refusal_limits"]
    outage = (
        redis_errors.ConnectionError("connection refused")
        if limiter.dependency is outages.REDIS
        else OperationalError("SELECT", {}, Exception("connection refused"))
    )

    def down(*args):
        raise outage

    monkeypatch.setattr(limiter.hits, "times", down)
    monkeypatch.setattr(limiter.hits, "add", down)
    conversation = conversation_with_agent(sandbox, "Customer", "sms")
    try:
        assert guess(client, 1) == 401  # refused, not a 500
        bearer = {"Authorization": f"Bearer {agent_token}"}
        assert client.get(f"/api/v1/conversations/{conversation}/audio", headers=bearer).status_code == 200
        assert limiter.dependency.down  # logged once, as an outage
    finally:
        limiter.dependency.reachable()  # the process-wide outage state, for the next tests
