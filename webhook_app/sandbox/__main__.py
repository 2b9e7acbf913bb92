"""`python -m webhook_app.sandbox`: the sandbox as a process of its own, a stand-in for Twilio's hosts that a
deployed service reaches through TWILIO_API_BASE_URL (CI's deploy check runs it so)."""

from __future__ import annotations

import argparse

from werkzeug.serving import run_simple

from .account import Sandbox


def serve(argv: list[str] | None = None) -> None:
    """Serve the sandbox, with the account's credentials printed for the service's environment."""
    parser = argparse.ArgumentParser(prog="python -m webhook_app.sandbox", description=serve.__doc__)
    parser.add_argument("--db", default="instance/twilio-sandbox.db", help="the sandbox's state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--post-webhook-url", help="where customer messages are posted (onMessageAdded)")
    parser.add_argument("--pre-webhook-url", help="where agent SDK sends are checked first (onMessageAdd)")
    args = parser.parse_args(argv)
    sandbox = Sandbox(args.db)
    if args.post_webhook_url or args.pre_webhook_url:
        sandbox.set_webhook(args.post_webhook_url, args.pre_webhook_url)
    print(
        f"TWILIO_ACCOUNT_SID={sandbox.account_sid}\nTWILIO_AUTH_TOKEN={sandbox.auth_token}\n"
        f"TWILIO_API_BASE_URL=http://{args.host}:{args.port}",
        flush=True,
    )
    run_simple(args.host, args.port, sandbox.wsgi_app(), threaded=True)


if __name__ == "__main__":
    serve()
