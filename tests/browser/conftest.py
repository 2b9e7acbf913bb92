"""Real-browser fixtures: the test app on a live server thread, and Debian's Chromium driven by Playwright.

Chromium's fake capture device stands in for a microphone (a steady beep), and the fake UI flag answers the
permission prompt with "allow". CI installs /usr/bin/chromium, so there a missing browser fails the tests rather than
skipping them (a silently skipped browser suite would hide a broken record panel); on a developer machine
without Debian's chromium, `make test` skips them with the command to install it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
        message = (
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium chromium-driver; "
            ".ci/run does) or set CHROMIUM_EXECUTABLE"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: a missing browser there is a broken pipeline, never a skip
        pytest.skip(message)
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
