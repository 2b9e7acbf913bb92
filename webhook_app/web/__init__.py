"""The web edge: what every HTTP request meets before and after a flow's view.

The request class and its limits (wrappers, slow_clients, the SQLite gunicorn worker), the one error shape (errors),
who may call (flex_auth for the agent API, cors, ratelimit for refused attempts), response headers (headers) and
/healthz (health).
"""
