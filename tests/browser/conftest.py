"""Real-browser fixtures: the test app on a live server thread, Debian's Chromium driven by Playwright, Firefox and
WebKit (engines.py), and the stand-in Flex desktop with the plugin's built bundle (flex_desktop.py).

Chromium's fake capture device stands in for a microphone (a steady beep), and the fake UI flag answers the
permission prompt with "allow". CI installs /usr/bin/chromium, so there a missing browser fails the tests rather than
skipping them (a silently skipped browser suite would hide a broken record panel); on a developer machine
without Debian's chromium, `make test` skips them with the command to install it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import engines
from tests.browser.flex_desktop import BUNDLE, REACT, REACT_DOM, ROOT, stand_in_desktop
from webhook_app.sandbox.demo import AGENT_ATTRIBUTES, AGENT_IDENTITY

CHROMIUM = os.environ.get("CHROMIUM_EXECUTABLE", "/usr/bin/chromium")
QUIET_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FAKE_MICROPHONE = ["--use-fake-device-for-media-stream"]
ALLOW_MICROPHONE = ["--use-fake-ui-for-media-stream"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def playwright_driver():
    if not os.access(CHROMIUM, os.X_OK):
        engines.unavailable(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium chromium-driver; "
            ".ci/run does) or set CHROMIUM_EXECUTABLE"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


def launch(driver, allow_microphone: bool = True):
    args = QUIET_ARGS + FAKE_MICROPHONE + (ALLOW_MICROPHONE if allow_microphone else [])
    return driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


@pytest.fixture(scope="session")
def browser(playwright_driver):
    browser = launch(playwright_driver)
    yield browser
    browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 760}, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def browser_without_microphone_permission(playwright_driver):
    """No fake "allow" answer and no granted permission: Chromium denies getUserMedia (NotAllowedError)."""
    browser = launch(playwright_driver, allow_microphone=False)
    yield browser
    browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# -- Firefox and WebKit (engines.py) -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def firefox_browser():
    yield from engines.firefox_session()


@pytest.fixture(scope="session")
def webkit_browser():
    yield from engines.webkit_session()


@pytest.fixture(params=["firefox", "webkit"])
def engine_page(request):
    """The smoke set's page: the same test in Firefox and in WebKit."""
    yield from engines.page_of(request.getfixturevalue(f"{request.param}_browser"))


@pytest.fixture
def firefox_page(firefox_browser):
    yield from engines.page_of(firefox_browser)


@pytest.fixture
def firefox_without_microphone_permission():
    """A second Firefox whose answer to every microphone request is "block", as after an agent chose it."""
    browser = engines.firefox_blocking_the_microphone()
    try:
        yield from engines.page_of(browser)
    finally:
        browser.close()


# -- the Flex plugin's built bundle in the stand-in desktop (flex_desktop.py) -----------------------------------------


@pytest.fixture(scope="session")
def plugin_bundle() -> Path:
    missing = [path for path in (BUNDLE, REACT, REACT_DOM) if not path.is_file()]
    if missing:
        engines.unavailable(
            f"{', '.join(str(p.relative_to(ROOT)) for p in missing)} missing: build the Flex plugin first "
            "(flex-plugin/ci.sh, or cd flex-plugin && npm ci && npm run build)"
        )
    return BUNDLE


@pytest.fixture
def conversations(sandbox):
    """Two chat tasks' conversations, each with its customer and the agent, as Flex's would have."""
    made = {}
    for channel, label in (("whatsapp", "WhatsApp customer"), ("sms", "SMS customer")):
        sid = sandbox.create_conversation(label, channel)["sid"]
        sandbox.add_participant(sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
        made[channel] = sid
    return made


@pytest.fixture
def flex_page(page, app, live_server, sandbox, conversations, plugin_bundle):
    """Open the stand-in agent desktop with the plugin; call it with config overrides (serviceUrl=None, ...).

    The page has an origin of its own (another port), which the service must allow as it allows Flex's
    (FLEX_ALLOWED_ORIGINS): the plugin's requests are cross-origin, with CORS preflights, as in Flex. (Serving it as
    https://flex.twilio.com itself does not work here: Chromium's Local Network Access blocks a public origin from
    calling the service on 127.0.0.1. A deployed service is public, so Flex does not meet that.)
    """
    with contextlib.ExitStack() as opened:

        def open_desktop(**overrides):
            origin = opened.enter_context(
                stand_in_desktop(app, live_server, sandbox, conversations, plugin_bundle, **overrides)
            )
            page.goto(f"{origin}/agent-desktop/")
            expect(page.locator(".Twilio-MessageInputActions")).to_be_visible()
            assert page.evaluate("window.__pluginName") == "AudioMessagesPlugin"
            page.flex_origin = origin
            return page

        yield open_desktop
