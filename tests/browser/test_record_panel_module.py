"""The record panel as another origin's page imports it (a Flex plugin, say): record-panel.js and every sibling
module it imports are fetched in CORS mode, so each must be served with Access-Control-Allow-Origin."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.helpers.service import serving
from webhook_app.sandbox.demo import AGENT_ATTRIBUTES, AGENT_IDENTITY

PAGE = """<!doctype html><html><body><div id="panel"></div><div id="list"></div><script type="module">
const config = __CONFIG__;
try {
  const { mountRecordPanel, mountAudioList, formatDuration } = await import(`${config.service}/static/record-panel.js`);
  const shared = { apiBaseUrl: config.service, conversationSid: config.sid, getToken: async () => config.token };
  mountAudioList(document.getElementById("list"), shared);
  mountRecordPanel(document.getElementById("panel"), { ...shared, expanded: true });
  window.__imported = formatDuration(3.9);
} catch (error) {
  window.__imported = `failed: ${error}`;
}
</script></body></html>"""


def test_another_origin_imports_the_record_panel_and_its_modules(page, app, live_server, sandbox):
    sid = sandbox.create_conversation("WhatsApp customer", "whatsapp")["sid"]
    sandbox.add_participant(sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
    config = {"service": live_server, "sid": sid, "token": sandbox.issue_token(AGENT_IDENTITY, roles=["agent"])}

    def host(environ, start_response):
        body = PAGE.replace("__CONFIG__", json.dumps(config)).encode()
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
        return [body]

    modules = []
    page.on(
        "response",
        lambda response: (
            modules.append(response)
            if response.url.startswith(f"{live_server}/static/") and response.url.endswith(".js")
            else None
        ),
    )
    with serving(host) as origin:
        app.config["FLEX_ALLOWED_ORIGINS"] = [*app.config["FLEX_ALLOWED_ORIGINS"], origin]
        page.goto(f"{origin}/")
        page.wait_for_function("() => window.__imported !== undefined")
        assert page.evaluate("window.__imported") == "0:04"
        expect(page.get_by_role("button", name="Start recording a voice note")).to_be_visible()
        expect(page.locator(".al-empty")).to_have_text("No audio messages yet.")
    # The entry and its siblings (record-panel/, shared/), each shared with any origin.
    assert len(modules) > 1
    assert {response.url: response.headers.get("access-control-allow-origin") for response in modules} == {
        response.url: "*" for response in modules
    }
