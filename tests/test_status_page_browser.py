"""/status in a real browser: Debian's headless Chromium through Selenium (chromedriver from the same
package; nothing is downloaded). Screenshots are decoded and their pixels checked: the component badges'
colours, the banner's, and the dark palette when prefers-color-scheme is emulated dark."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.emulator.harness import BotHarness
from tests.test_status_page_support import declare, monitor, page_config, running_target

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium

    HAVE_SELENIUM = bool(selenium.__version__)
except ImportError:  # pragma: no cover - a dev dependency
    HAVE_SELENIUM = False
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None or not HAVE_SELENIUM,
    reason="browser tests need Debian's chromium and chromium-driver packages (apt-get install chromium "
           "chromium-driver) and selenium (pip install -e '.[dev]')")

LIGHT = {"operational": (0x1A, 0x7F, 0x37), "degraded_performance": (0xB7, 0x79, 0x1F),
         "partial_outage": (0xDD, 0x6B, 0x20), "major_outage": (0xC5, 0x30, 0x30), "bg": (0xFF, 0xFF, 0xFF)}
DARK = {"operational": (0x2E, 0xA0, 0x43), "degraded_performance": (0xD2, 0x99, 0x22),
        "partial_outage": (0xF0, 0x88, 0x3E), "major_outage": (0xF8, 0x51, 0x49), "bg": (0x0D, 0x11, 0x17)}
# `STATUS_PAGE_SCREENSHOT=docs/status-page.png pytest tests/test_status_page_browser.py` refreshes the README's
# picture (a partial outage with two public updates); tests write nothing into the tree otherwise.
SCREENSHOT = os.environ.get("STATUS_PAGE_SCREENSHOT")


# -- PNG decoding (Chromium writes 8-bit RGB or RGBA, not interlaced) --------------------------
class Png:
    def __init__(self, data: bytes) -> None:
        assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
        pos, idat = 8, b""
        while pos < len(data):
            (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
            body = data[pos + 8:pos + 8 + length]
            if kind == b"IHDR":
                self.width, self.height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
                assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
                self.channels = 4 if color == 6 else 3
            elif kind == b"IDAT":
                idat += body
            pos += 12 + length
        self._pending = self._unfilter(zlib.decompress(idat))
        self.rows: list[bytearray] = []  # decoded on demand, top down (each row's filter needs the one above)

    def _unfilter(self, raw: bytes) -> Iterator[bytearray]:
        stride, n = self.width * self.channels, self.channels
        prior = bytearray(stride)
        for y in range(self.height):
            kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
            if kind == 0:
                pass
            elif kind == 2:
                line = bytearray((v + u) & 0xFF for v, u in zip(line, prior, strict=True))
            else:
                self._slow(kind, line, prior, stride, n)
            yield line
            prior = line

    @staticmethod
    def _slow(kind: int, line: bytearray, prior: bytearray, stride: int, n: int) -> None:
        """Sub (1), Average (3) and Paeth (4), in place."""
        for i in range(stride):
            a = line[i - n] if i >= n else 0
            b, c = prior[i], prior[i - n] if i >= n else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            else:
                raise AssertionError(f"PNG filter type {kind}")

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        assert 0 <= x < self.width and 0 <= y < self.height, (x, y, self.width, self.height)
        while len(self.rows) <= y:
            self.rows.append(next(self._pending))
        row, i = self.rows[y], x * self.channels
        return row[i], row[i + 1], row[i + 2]


def close(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# -- the browser, driven in a thread (the bot answers on this test's event loop) ------------------
class Browser:
    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM or ""
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=900,1200", "--force-device-scale-factor=1", "--hide-scrollbars",
                     "--force-color-profile=srgb"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or ""), options=options)
        # The page is cacheable for cache_seconds (real seconds; the test's clock is a FakeClock).
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})

    def dark(self, on: bool) -> None:
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark" if on else "light"}]})

    def load(self, url: str) -> dict[str, Any]:
        """Open `url`; a screenshot and where the badges and banner are."""
        from selenium.webdriver.common.by import By

        self.driver.get(url)
        # Two animation frames: the page is laid out and painted before its rects and pixels are read (on a
        # loaded machine a screenshot once showed the API badge's red where the Checkout badge's rect was).
        self.driver.execute_async_script(
            "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));")
        badges = {e.find_element(By.XPATH, "ancestor::section").get_attribute("data-component"): e.rect
                  for e in self.driver.find_elements(By.CSS_SELECTOR, ".component .badge")}
        banner = self.driver.find_element(By.ID, "overall")
        return {"png": self.driver.get_screenshot_as_png(), "badges": badges, "banner": banner.rect,
                "banner_text": banner.text, "title": self.driver.title,
                "scripts": len(self.driver.find_elements(By.TAG_NAME, "script")),
                "incidents": [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".incident")],
                "past": [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".past")],
                "overflow": self.driver.execute_script(
                    "return document.documentElement.scrollWidth > window.innerWidth")}

    def phone(self) -> None:
        """A phone's viewport (390 CSS pixels wide, mobile), tall enough to hold the whole page."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 390, "height": 1800, "deviceScaleFactor": 1, "mobile": True})

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture
async def browser() -> Any:
    made = await asyncio.to_thread(Browser)
    yield made
    await asyncio.to_thread(made.quit)


def center(rect: dict[str, float]) -> tuple[int, int]:
    return int(rect["x"] + rect["width"] / 2), int(rect["y"] + rect["height"] / 2)


def badge_colours(shot: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    png = Png(shot["png"])
    return {name: png.pixel(*center(rect)) for name, rect in shot["badges"].items()}


async def show(browser: Browser, bot: BotHarness) -> dict[str, Any]:
    return await asyncio.to_thread(browser.load, f"{bot.url}/status")


async def test_all_operational_in_the_browser(make_bot: Any, browser: Browser) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url))
        await monitor(bot)
        shot = await show(browser, bot)
    png = Png(shot["png"])
    assert png.width == 900 and 900 < png.height <= 1200
    assert shot["title"] == "Example status" and shot["banner_text"] == "All systems operational"
    assert shot["scripts"] == 0 and shot["incidents"] == [] and shot["past"] == []
    assert set(shot["badges"]) == {"API", "Checkout", "Website"}
    for name, colour in badge_colours(shot).items():
        assert close(colour, LIGHT["operational"]), (name, colour)
    assert close(png.pixel(int(shot["banner"]["x"]) + 4, int(shot["banner"]["y"]) + 4), LIGHT["operational"])
    assert close(png.pixel(2, 2), LIGHT["bg"])


async def test_a_partial_outage_then_the_resolved_incident_in_history(make_bot: Any, browser: Browser) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url, incident_states={"P2": "partial_outage"}))
        await monitor(bot)
        incident = await declare(bot, "Payments failing", "P2", service="checkout")
        channel = incident.channel_id or ""
        await bot.command("/incident", "publish Some card payments fail; we are investigating.", channel=channel)
        bot.clock.advance(minutes=15)
        await bot.command("/incident", "publish identified A faulty release was found and is being rolled back.",
                          channel=channel)
        shot = await show(browser, bot)
        colours = badge_colours(shot)
        assert close(colours["Checkout"], LIGHT["partial_outage"]), colours
        assert close(colours["API"], LIGHT["operational"]) and close(colours["Website"], LIGHT["operational"])
        assert shot["banner_text"] == "Partial outage"
        banner = Png(shot["png"]).pixel(int(shot["banner"]["x"]) + 4, int(shot["banner"]["y"]) + 4)
        assert close(banner, LIGHT["partial_outage"]), banner
        [card] = shot["incidents"]
        assert card.index("A faulty release was found") < card.index("Some card payments fail")
        assert "Service disruption: Checkout" in card and "Payments failing" not in card
        if SCREENSHOT:
            Path(SCREENSHOT).write_bytes(shot["png"])

        await asyncio.to_thread(browser.phone)
        narrow = await show(browser, bot)
        assert not narrow["overflow"] and Png(narrow["png"]).width == 390  # readable on a phone
        assert close(badge_colours(narrow)["Checkout"], LIGHT["partial_outage"])

        await bot.command("/incident", "resolve Rolled back", channel=channel)
        bot.clock.advance(minutes=5)
        await monitor(bot)
        after = await show(browser, bot)
    assert after["incidents"] == [] and after["banner_text"] == "All systems operational"
    [past] = after["past"]
    assert "This incident has been resolved." in past and "Some card payments fail" in past
    assert close(badge_colours(after)["Checkout"], LIGHT["operational"])


async def test_dark_mode(make_bot: Any, browser: Browser) -> None:
    async with running_target() as target:
        bot = await make_bot(config=page_config(target.url))
        target.down("api")
        await monitor(bot)
        await asyncio.to_thread(browser.dark, True)
        dark = await show(browser, bot)
        await asyncio.to_thread(browser.dark, False)
        light = await show(browser, bot)
    dark_png, light_png = Png(dark["png"]), Png(light["png"])
    assert close(dark_png.pixel(2, 2), DARK["bg"]) and close(light_png.pixel(2, 2), LIGHT["bg"])
    assert close(badge_colours(dark)["API"], DARK["major_outage"]) and close(badge_colours(dark)["Checkout"],
                                                                            DARK["operational"])
    assert close(badge_colours(light)["API"], LIGHT["major_outage"])
    assert dark["banner_text"] == "Major outage"
