"""The served app and a real Chromium (Playwright) for the browser tests.

Every request a page makes to a non-loopback host fails and is recorded; there must be none.
Without Chromium the tests are skipped, unless the environment variable CI is set: then they fail.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tools.ports import free_port

# Debian's chromium-headless-shell: Chromium's engine without the desktop browser around it, the build
# Playwright itself runs headless. The browser tests spend about 15 % less CPU in it than in the full
# browser, and the first screen lays out the same in both (docs/development.md).
CHROMIUM = "/usr/bin/chromium-headless-shell"
# Names resolve to nothing but loopback, and every request not to loopback goes to a proxy on the discard
# port, where nothing listens: it fails at once, whether it names a host or an address.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",  # WebRTC's UDP would pass the proxy by
]


def outside(url: str) -> bool:
    """A URL whose request leaves the machine: anything but loopback (named exactly) and in-page data."""
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob", "about") and parts.hostname != "127.0.0.1"


def _require_browser() -> None:
    missing = [what for what, ok in [("chromium-headless-shell", Path(CHROMIUM).exists()),
                                     ("playwright", _importable("playwright"))] if not ok]
    if missing:
        message = (f"browser test needs {', '.join(missing)}"
                   " (apt-get install chromium-headless-shell; pip install playwright)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    """(url, explorer): the app on the embedded model, launched in-process on loopback."""
    _require_browser()
    from ccnet.app.explorer import Explorer
    from ccnet.app.exports import Exports
    from ccnet.app.ui import build_app, launch_options

    port = free_port()
    explorer = Explorer("default", device="cpu")
    demo = build_app(explorer, Exports(tmp_path_factory.mktemp("exports")))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    yield f"http://127.0.0.1:{port}/", explorer
    demo.close()


@pytest.fixture(scope="module")
def browser(live_app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, **context):
    """A page whose requests to anything but loopback fail (see CHROMIUM_ARGS) and are recorded in
    page.blocked. They are recorded by listening, not by routing: Playwright's routing turns the HTTP
    cache off, and every load then fetched the app's 120 scripts again (about 1 CPU-s a load)."""
    page = browser.new_context(**{"viewport": {"width": 1400, "height": 900}, **context}).new_page()
    page.blocked = []
    page.context.on("request", lambda request: outside(request.url) and page.blocked.append(request.url))
    page.on("websocket", lambda socket: outside(socket.url) and page.blocked.append(socket.url))
    return page


@pytest.fixture(scope="module")
def desktop_page(browser):
    """One 1400x900 page per module: every test navigates it afresh, and reusing it spares a renderer
    start and a cold load of the app's scripts (about 1 s a test)."""
    page = open_page(browser)
    yield page
    page.context.close()


@pytest.fixture()
def page(desktop_page):
    desktop_page.blocked.clear()
    yield desktop_page
    desktop_page.goto("about:blank")  # ends what the test left running (its session's stream, a pending call)
    assert desktop_page.blocked == [], f"the page tried to reach: {desktop_page.blocked}"  # unload's included
