"""The served app and a real Chromium (Playwright) for the browser tests: one room of both, shared by
the browser tests that run one after another.

Every request a page makes to a non-loopback host fails and is recorded; there must be none.
Without Chromium the tests are skipped, unless the environment variable CI is set: then they fail.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tools.ports import free_port

# Debian's chromium-headless-shell: Chromium's engine without the desktop browser around it, the build
# Playwright itself runs headless. The browser tests spend about 15 % less CPU in it than in the full
# browser, which they use where the shell is not installed: the first screen lays out the same in both
# (docs/development.md).
CHROMIUM = next((path for path in ("/usr/bin/chromium-headless-shell", "/usr/bin/chromium") if Path(path).exists()),
                "/usr/bin/chromium-headless-shell")
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
    missing = [what for what, ok in [("chromium", Path(CHROMIUM).exists()),
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


PHONE = {"viewport": {"width": 412, "height": 915}, "has_touch": True, "is_mobile": True}


def open_page(browser, **context):
    """A page in a context of its own (1400x900 unless ``context`` says otherwise)."""
    return guarded_page(browser.new_context(**{"viewport": {"width": 1400, "height": 900}, **context}))


def guarded_page(context):
    """A new page in ``context``, whose requests to anything but loopback fail (see CHROMIUM_ARGS) and
    are recorded in page.blocked: the context's list, to which each of its pages and workers adds. They are
    recorded by listening, not by routing: Playwright's routing turns the HTTP cache off, and every load
    then fetched the app's 120 scripts again (about 1 CPU-s a load)."""
    if not hasattr(context, "blocked"):
        context.blocked = []
        context.on("request", lambda request: outside(request.url) and context.blocked.append(request.url))
    page = context.new_page()
    page.blocked = context.blocked
    page.on("websocket", lambda socket: outside(socket.url) and page.blocked.append(socket.url))
    return page


class Room:
    """The served app (embedded model, in this process, on loopback), Chromium and one 1400x900 page,
    shared by the browser tests that run one after another (tests/conftest.py keeps them on one worker):
    built for the first, closed after the last. Reusing the page spares a renderer start and a cold
    load of the app's scripts; reusing the app, its build and its first analysis (about 4 CPU-s in all).
    The phone tests' pages share a context of their own, whose cache the first one fills.
    Closed before any other test runs: Playwright's event loop would stand in the way of asyncio.run."""

    def __init__(self) -> None:
        self._empty()

    def _empty(self) -> None:
        self.app = self.demo = self.playwright = self.chromium = self.page = self.phone = None
        self.on_first_screen = False  # the page as a reader left it (the `first_screen` fixture)

    def open(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        if self.app:
            return
        _require_browser()
        from playwright.sync_api import sync_playwright

        from ccnet.app.explorer import Explorer
        from ccnet.app.exports import Exports
        from ccnet.app.ui import build_app, launch_options

        port, explorer = free_port(), Explorer("default", device="cpu")
        self.demo = build_app(explorer, Exports(tmp_path_factory.mktemp("exports")))
        self.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                         **launch_options())
        self.app = f"http://127.0.0.1:{port}/", explorer
        self.playwright = sync_playwright().start()
        self.chromium = self.playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.page = open_page(self.chromium)

    def close(self) -> None:
        if self.playwright:
            self.chromium.close()
            self.playwright.stop()
        if self.demo:
            self.demo.close()
        self._empty()


ROOM = Room()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Close the room once the next test does not use it (or there is none)."""
    yield
    if ROOM.app and (nextitem is None or "live_app" not in getattr(nextitem, "fixturenames", ())):
        ROOM.close()


@pytest.fixture()
def live_app(tmp_path_factory):
    """(url, explorer): the room's app; each test opens its own session in it."""
    ROOM.open(tmp_path_factory)
    return ROOM.app


@pytest.fixture()
def browser(live_app):
    """The room's Chromium, for a test that opens a page of its own (a phone's, a second visitor's)."""
    return ROOM.chromium


@pytest.fixture()
def page(live_app):
    """The room's page for a test that navigates and changes it; it is left on a blank page after."""
    page, ROOM.on_first_screen = ROOM.page, False
    page.blocked.clear()
    yield page
    page.goto("about:blank")  # ends what the test left running (its session's stream, a pending call)
    assert page.blocked == [], f"the page tried to reach: {page.blocked}"  # unload's included


@pytest.fixture()
def phone(live_app):
    """A new 412x915 touch page in the room's phone context, closed after the test."""
    if ROOM.phone is None:
        ROOM.phone = ROOM.chromium.new_context(**PHONE)
    page = guarded_page(ROOM.phone)
    page.blocked.clear()
    yield page
    page.close()
    assert page.blocked == [], f"the page tried to reach: {page.blocked}"


@pytest.fixture()
def first_screen(live_app):
    """The room's page on the app's first screen (its plain link: the first example, a car pixel
    pinned), for a test that only reads it: loaded for the first such test after any other, and kept
    for the readers that follow, which leave it as they found it (the scroll is put back here)."""
    from ccnet.app.ui.common import FIRST_PIXEL

    page = ROOM.page
    if not ROOM.on_first_screen:
        page.goto(live_app[0])
        wait_viewer(page)
        wait_pinned(page, *FIRST_PIXEL)
        ROOM.on_first_screen = True
    page.evaluate("window.scrollTo(0, 0)")
    page.blocked.clear()
    yield page
    assert page.blocked == [], f"the page tried to reach: {page.blocked}"


@pytest.fixture()
def first_screen_to_change(first_screen):
    """The first screen as the readers leave it, for one test that then changes it (the load saved)."""
    yield first_screen
    ROOM.on_first_screen = False
    first_screen.goto("about:blank")


def api_client(url: str, downloads: Path):
    """A gradio_client Client of the app at ``url`` (plain HTTP on loopback), its files saved in
    ``downloads``. No certificates to check: with checking on, httpx read the CA bundle again for
    every call (14 ms each, 2 CPU-s of a run)."""
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(downloads), ssl_verify=False)


def wait_viewer(page, timeout: float = 120_000) -> None:
    page.wait_for_function("() => window.__ccnetViewer && window.__ccnetViewer.state.cell", timeout=timeout)


def wait_pinned(page, x: int, y: int) -> str:
    page.wait_for_function("(p) => document.querySelector('#pixel-info')?.innerText.includes(p)",
                           arg=f"pixel ({x}, {y})", timeout=60_000)
    return page.locator("#pixel-info").inner_text()


def _app_busy(queue) -> bool:
    """Whether the app's queue has an event waiting or running. (Its unsent messages are no measure:
    those of sessions whose page has gone stay queued.)"""
    try:
        waiting = any(events.queue for events in list(queue.event_queue_per_concurrency_id.values()))
    except RuntimeError:  # a dict changed while read: the server is at work
        return True
    return bool(waiting or queue.get_active_worker_count())


def wait_answered(page, quiet_s: float = 0.5, timeout_s: float = 30) -> None:
    """Until the room's app has been idle for ``quiet_s`` (what the page's last action set off, its
    chained events included, is answered), then until the page has drawn twice: a test that
    checks that nothing more comes back waits for that, not for a fixed time."""
    queue, deadline = ROOM.demo._queue, time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        assert time.monotonic() < deadline, "the app is still at work"
        time.sleep(0.05)
        if _app_busy(queue):
            quiet_since = time.monotonic()
    page.evaluate("() => new Promise(drawn => requestAnimationFrame(() => requestAnimationFrame(drawn)))")
