"""Flex token validation (iam.twilio.com): the sandbox issues opaque Flex-like tokens and validates them as IAM
does, answering the shape public validator clients parse."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterable

from flask import Blueprint, Response, jsonify, request

from .resources import TokenValidation
from .served import current_sandbox
from .store import Store
from .wire import (
    ERR_INVALID_PARAMETER,
    ERR_TOKEN_EXPIRED,
    ERR_TOKEN_INVALID,
    TwilioError,
    iso_ms,
    new_sid,
    not_found,
)

bp = Blueprint("iam", __name__)


def flex_realm_user_id(identity: str) -> str:
    """Flex escapes a user's name into its chat identity ("alice@example.com" -> "alice_40example_2Ecom"):
    each character outside [A-Za-z0-9] becomes _XX in hex. The token's realm_user_id keeps the name as it was."""
    return re.sub(r"_([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), identity)


def issue_token(
    store: Store, identity: str, roles: Iterable[str] = ("agent",), ttl_s: int = 3600, realm_user_id: str | None = None
) -> str:
    token = ".".join(base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=") for n in (48, 0, 12, 96, 16))
    with store.tx() as conn:
        # A Flex user keeps one TaskRouter worker across logins.
        known = conn.execute(
            "SELECT worker_sid, flex_user_sid FROM tokens WHERE identity = ? LIMIT 1", (identity,)
        ).fetchone()
        worker_sid, flex_user_sid = (
            (known["worker_sid"], known["flex_user_sid"]) if known else (new_sid("WK"), new_sid("FU"))
        )
        conn.execute(
            "INSERT INTO tokens (token, identity, realm_user_id, roles, worker_sid, flex_user_sid, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                token,
                identity,
                realm_user_id or flex_realm_user_id(identity),
                json.dumps(list(roles)),
                worker_sid,
                flex_user_sid,
                time.time() + ttl_s,
            ),
        )
    return token


def validate_token(store: Store, token: str) -> TokenValidation:
    with store.connect() as conn:
        row = conn.execute("SELECT * FROM tokens WHERE token = ?", (token,)).fetchone()
    # Keys are always present; failures null them out (the shape public validator clients parse).
    result: TokenValidation = {
        "valid": False,
        "code": ERR_TOKEN_INVALID,
        "message": "Invalid Access Token",
        "expiration": None,
        "realm_user_id": None,
        "identity": None,
        "roles": None,
        "worker_sid": None,
        "flex_instance_sid": None,
        "flex_user_sid": None,
    }
    if row is None:
        return result
    if row["expires_at"] <= time.time():
        result["code"], result["message"] = ERR_TOKEN_EXPIRED, "Access Token expired or expiration date invalid"
        return result
    # Success carries code 0, not null (twilio-flex-token-validator's README).
    return {
        "valid": True,
        "code": 0,
        "message": None,
        "expiration": iso_ms(row["expires_at"]),
        "realm_user_id": row["realm_user_id"],
        "identity": row["identity"],
        "roles": json.loads(row["roles"]),
        "worker_sid": row["worker_sid"],
        "flex_instance_sid": store.flex_instance_sid,
        "flex_user_sid": row["flex_user_sid"],
    }


@bp.post("/v1/Accounts/<account_sid>/Tokens/validate")
def validate(account_sid: str) -> Response:
    store = current_sandbox().store
    if account_sid != store.account_sid:
        raise not_found(request.path)
    body = request.get_json(silent=True) or {}
    token = body.get("token") if isinstance(body, dict) else None
    token = token or request.form.get("token") or request.form.get("Token")
    if not token or not isinstance(token, str):  # a JSON list or number is no token: 400 as for a missing one
        raise TwilioError(400, ERR_INVALID_PARAMETER, "Missing required parameter token")
    return jsonify(validate_token(store, token))
