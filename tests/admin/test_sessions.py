"""Admin sessions end when their admin signs out: a copied session cookie, and every session of that admin at once."""

import re


def sign_in_page(client, token) -> str:
    """Sign in on /admin with `token`; the page's CSRF token (from its hidden form field)."""
    page = client.get("/admin").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/admin/login", data={"token": token, "csrf_token": csrf})
    assert response.status_code == 302, response.get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin").get_data(as_text=True)).group(1)


def copy_session(source, target) -> None:
    cookie = source.get_cookie("session")
    target.set_cookie("session", cookie.value, domain=cookie.domain)


def test_signing_out_ends_a_copied_admin_session(app):
    app.config["ADMIN_TOKEN"] = "admin-secret"
    browser, thief = app.test_client(), app.test_client()
    csrf = sign_in_page(browser, "admin-secret")
    copy_session(browser, thief)
    assert thief.get("/api/v1/admin/settings").status_code == 200  # the copy works while the session is open

    browser.post("/admin/logout", data={"csrf_token": csrf})
    assert thief.get("/api/v1/admin/settings").status_code == 401  # it stayed valid for up to 12 h before
    assert "Sign in" in thief.get("/admin").get_data(as_text=True)


def test_sign_out_everywhere_ends_every_session_of_that_admin(app, sandbox):
    boss = sandbox.issue_token("boss@example.com", roles=["admin"])
    other_admin = sandbox.issue_token("other@example.com", roles=["supervisor"])
    laptop, phone, colleague = app.test_client(), app.test_client(), app.test_client()
    csrf = sign_in_page(laptop, boss)
    sign_in_page(phone, boss)
    sign_in_page(colleague, other_admin)

    laptop.post("/admin/logout", data={"csrf_token": csrf, "everywhere": "1"})
    assert phone.get("/api/v1/admin/settings").status_code == 401
    assert laptop.get("/api/v1/admin/settings").status_code == 401
    assert colleague.get("/api/v1/admin/settings").status_code == 200  # another admin's session is theirs
