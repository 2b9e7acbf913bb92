"""The service's own pages run only its own scripts and cannot be framed by another site."""

import pytest


@pytest.mark.parametrize("path", ["/admin", "/agent"])
def test_pages_run_only_our_scripts_and_cannot_be_framed(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
