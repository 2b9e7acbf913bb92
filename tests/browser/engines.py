"""Firefox and WebKit (Safari's engine) for the browser tests, with no Playwright builds of either.

- Firefox: Debian's firefox-esr, headless, spoken to over WebDriver BiDi by the small client below (a websocket
  and JSON; Debian has no geckodriver). Its fake media streams stand in for a microphone (a tone).
- WebKit: Debian's WebKitGTK MiniBrowser through WebKitWebDriver and Selenium, on an Xvfb display (MiniBrowser has
  no headless mode), with WebKit's mock capture devices as the microphone.

Both are wrapped in `EnginePage`, which does what the engine tests need and nothing more: navigate, call an
(async) function in the page and get its JSON result back, wait for a condition, click. Scripts are plain DOM
code, so the same test runs in both engines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import NoReturn

FIREFOX = os.environ.get("FIREFOX_EXECUTABLE", "/usr/bin/firefox-esr")
WEBKIT_DRIVER = os.environ.get("WEBKIT_WEBDRIVER", "/usr/bin/WebKitWebDriver")
MINIBROWSER = os.environ.get("WEBKIT_MINIBROWSER", "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser")
XVFB = shutil.which("Xvfb") or "/usr/bin/Xvfb"
INSTALL_HINT = "apt-get install firefox-esr webkit2gtk-driver xvfb (.ci/run does)"

# Firefox preferences: the fake stream as the microphone, no permission prompt (headless cannot answer one), and
# audio may play without a click (the tests play previews from scripts).
FIREFOX_PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}
STARTUP_TIMEOUT_S = 60


class PageScriptError(AssertionError):
    pass


def missing_executables(*paths: str) -> list[str]:
    return [path for path in paths if not os.access(path, os.X_OK)]


class EnginePage:
    """What a test does with a page in any engine. Subclasses implement `_call` and `goto`."""

    engine = "?"

    def goto(self, url: str) -> None:
        raise NotImplementedError

    def _call(self, wrapped: str, timeout_s: float) -> str:
        raise NotImplementedError

    def call(self, function: str, *args, timeout_s: float = 30):
        """Run the JavaScript `function` (may be async) with JSON-able `args`; its result, through JSON."""
        wrapped = f"""async () => {{
          try {{ return JSON.stringify({{ ok: await ({function})(...{json.dumps(list(args))}) }}); }}
          catch (error) {{ return JSON.stringify({{ error: `${{error?.name}}: ${{error?.message}}` }}); }}
        }}"""
        answer = json.loads(self._call(wrapped, timeout_s))
        if "error" in answer:
            raise PageScriptError(f"{self.engine}: {answer['error']}")
        return answer.get("ok")

    def wait_for(self, condition: str, *args, timeout_s: float = 15, message: str = ""):
        """Poll `condition` (a function of args) inside the page every animation frame until it is truthy."""
        found = self.call(
            f"""async (...args) => {{
          const condition = {condition};
          const deadline = performance.now() + {timeout_s * 1000};
          while (performance.now() < deadline) {{
            const value = await condition(...args);
            if (value) return value instanceof Node ? true : value;  // an element would come back as an empty object
            await new Promise((resolve) => setTimeout(resolve, 16));
          }}
          return null;
        }}""",
            *args,
            timeout_s=timeout_s + 30,
        )
        if not found:
            raise AssertionError(f"{self.engine}: timed out after {timeout_s} s waiting for {message or condition}")
        return found

    def text(self, selector: str) -> str | None:
        return self.call("(selector) => document.querySelector(selector)?.textContent ?? null", selector)

    def wait_for_text(self, selector: str, pattern: str, timeout_s: float = 15) -> str:
        """Wait until the element's text matches the regular expression `pattern`; the text."""
        return self.wait_for(
            """(selector, pattern) => {
          const text = document.querySelector(selector)?.textContent;
          return text != null && new RegExp(pattern).test(text) ? text : null;
        }""",
            selector,
            pattern,
            timeout_s=timeout_s,
            message=f"{selector} to match {pattern!r} (it reads {self.text(selector)!r})",
        )

    def click(self, name: str, within: str = "body", timeout_s: float = 15) -> None:
        """Click the enabled button named `name` (its aria-label, else its text) once it is there."""
        self.wait_for(
            """(within, label) => {
          const buttons = [...(document.querySelector(within)?.querySelectorAll("button") || [])];
          const button = buttons.find((b) => b.getAttribute("aria-label") === label)
            || buttons.find((b) => !b.hasAttribute("aria-label") && b.textContent.trim() === label);
          if (!button || button.disabled) return false;
          button.click();
          return true;
        }""",
            within,
            name,
            timeout_s=timeout_s,
            message=f"a button named {name!r}",
        )

    def count(self, selector: str) -> int:
        return self.call("(selector) => document.querySelectorAll(selector).length", selector)

    def errors(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------------
# Firefox over WebDriver BiDi


class FirefoxBidi:
    """A headless firefox-esr and one BiDi session on its websocket. One command at a time is all tests need."""

    def __init__(self, prefs: dict | None = None):
        import websocket  # websocket-client, a test dependency

        self.profile = Path(tempfile.mkdtemp(prefix="firefox-profile-"))
        all_prefs = {**FIREFOX_PREFS, **(prefs or {})}
        (self.profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n" for name, value in all_prefs.items())
        )
        self.process = subprocess.Popen(
            [
                FIREFOX,
                "--headless",
                "--no-remote",
                "--profile",
                str(self.profile),
                "--remote-debugging-port",
                "0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"},
        )
        address = self._read_address()
        self.socket = websocket.create_connection(f"{address}/session", timeout=STARTUP_TIMEOUT_S, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.send("session.new", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
        self.send("session.subscribe", {"events": ["log.entryAdded"]})

    def _read_address(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            lines.append(line)
            found = re.search(r"WebDriver BiDi listening on (ws://\S+)", line)
            if found:
                # Keep draining stderr, or Firefox blocks once the pipe fills.
                threading.Thread(target=lambda: [None for _ in self.process.stderr], daemon=True).start()
                return found.group(1)
        self.process.kill()
        raise RuntimeError(f"firefox-esr did not start its BiDi server: {''.join(lines)[-2000:]}")

    def send(self, method: str, params: dict, timeout_s: float = 60) -> dict:
        with self.lock:
            self.next_id += 1
            command_id = self.next_id
            self.socket.settimeout(timeout_s)
            self.socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
            while True:
                message = json.loads(self.socket.recv())
                if message.get("type") == "event":
                    self.events.append(message)
                elif message.get("id") == command_id:
                    if message.get("type") == "error":
                        raise RuntimeError(f"BiDi {method}: {message.get('error')}: {message.get('message')}")
                    return message["result"]

    def new_page(self) -> FirefoxPage:
        context = self.send("browsingContext.create", {"type": "tab"})["context"]
        return FirefoxPage(self, context)

    def close(self) -> None:
        try:
            self.send("browser.close", {}, timeout_s=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.socket.close()
        finally:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


class FirefoxPage(EnginePage):
    engine = "firefox"

    def __init__(self, browser: FirefoxBidi, context: str):
        self.browser = browser
        self.context = context
        self.preload_scripts: list[str] = []

    def add_init_script(self, source: str) -> None:
        """Run `source` in every document this tab loads, before the page's own scripts."""
        result = self.browser.send(
            "script.addPreloadScript", {"functionDeclaration": f"() => {{ {source} }}", "contexts": [self.context]}
        )
        self.preload_scripts.append(result["script"])

    def goto(self, url: str) -> None:
        self.browser.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def _call(self, wrapped: str, timeout_s: float) -> str:
        result = self.browser.send(
            "script.callFunction",
            {
                "functionDeclaration": wrapped,
                "awaitPromise": True,
                "target": {"context": self.context},
                # As if the agent had clicked: media may play, and the page acts as after a gesture.
                "userActivation": True,
            },
            timeout_s=timeout_s,
        )
        if result.get("type") == "exception":
            raise PageScriptError(f"firefox: {result['exceptionDetails'].get('text')}")
        return result["result"]["value"]

    def errors(self) -> list[str]:
        return [
            event["params"].get("text", "")
            for event in self.browser.events
            if event.get("method") == "log.entryAdded"
            and event["params"].get("type") == "javascript"
            and event["params"].get("source", {}).get("context") == self.context
        ]

    def close(self) -> None:
        for script in self.preload_scripts:
            self.browser.send("script.removePreloadScript", {"script": script})
        self.browser.send("browsingContext.close", {"context": self.context})


# ---------------------------------------------------------------------------------------------------------------
# WebKitGTK through WebKitWebDriver


class VirtualDisplay:
    """An Xvfb server on a free display number (Xvfb picks it and writes it to a pipe: no races with others)."""

    def __init__(self):
        read_end, write_end = os.pipe()
        self.process = subprocess.Popen(
            [XVFB, "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        if not number:
            self.process.kill()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class WebKitBrowser:
    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.webkitgtk.options import Options
        from selenium.webdriver.webkitgtk.service import Service

        self.display = VirtualDisplay()
        options = Options()
        options.binary_location = MINIBROWSER
        # --enable-mock-capture-devices: without them getUserMedia fails (OverconstrainedError) on a machine with
        # no microphone; --autoplay-policy=allow: the tests play previews from scripts.
        for argument in ("--automation", "--enable-mock-capture-devices=true", "--autoplay-policy=allow"):
            options.add_argument(argument)
        service = Service(executable_path=WEBKIT_DRIVER, env={**os.environ, "DISPLAY": self.display.display})
        try:
            self.driver = webdriver.WebKitGTK(options=options, service=service)
        except Exception:
            self.display.close()
            raise
        self.driver.set_script_timeout(120)

    def new_page(self) -> WebKitPage:
        return WebKitPage(self.driver)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.display.close()


class WebKitPage(EnginePage):
    """WebKitWebDriver has one window per session: a "new page" is that window, emptied between tests."""

    engine = "webkit"

    def __init__(self, driver):
        self.driver = driver

    def goto(self, url: str) -> None:
        self.driver.get(url)

    def _call(self, wrapped: str, timeout_s: float) -> str:
        self.driver.set_script_timeout(timeout_s)
        return self.driver.execute_async_script(
            f"const done = arguments[arguments.length - 1]; ({wrapped})().then(done);"
        )

    def close(self) -> None:
        self.driver.get("about:blank")


# ---------------------------------------------------------------------------------------------------------------
# What the fixtures in conftest.py run. As with Chromium: CI installs the engines, so there a missing one fails the
# tests; on a developer machine without them they skip with the command to install.


def unavailable(message: str) -> NoReturn:
    """What a missing browser, engine or Flex plugin build does to the test that needs it: under CI, which installs
    and builds them, a failure (a broken pipeline, never a silent skip); elsewhere a skip saying how to get it."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require(*paths: str) -> None:
    missing = missing_executables(*paths)
    if missing:
        unavailable(f"{', '.join(missing)} missing: {INSTALL_HINT}")


def firefox_session():
    require(FIREFOX)
    browser = FirefoxBidi()
    yield browser
    browser.close()


def firefox_blocking_the_microphone():
    """A Firefox that blocks every microphone request."""
    require(FIREFOX)
    return FirefoxBidi({"media.navigator.permission.disabled": False, "permissions.default.microphone": 2})


def webkit_session():
    require(WEBKIT_DRIVER, MINIBROWSER, XVFB)
    browser = WebKitBrowser()
    yield browser
    browser.close()


def page_of(browser):
    page = browser.new_page()
    yield page
    errors = page.errors()
    page.close()
    assert not errors, f"uncaught errors in the page: {errors}"
