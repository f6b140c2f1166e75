"""Headless Chromium for the viewer's tests: Debian's chromium and chromedriver (installed by
scripts/setup.sh), driven by Selenium with the driver's path given, so Selenium Manager never
looks for a download. Without them the browser tests skip, except under CI (CI=true), where
setup installs them and their absence is a failure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Screenshots the tests keep (git-ignored): look at them to see what the viewer draws.
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WINDOW = (1400, 1000)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing: headless Chromium comes from scripts/setup.sh (apt-get install chromium chromium-driver)"
    return None


def require_browser() -> None:
    reason = missing_browser()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests under CI: {reason}", pytrace=False)
    pytest.skip(reason)


class Browser:
    """One headless Chromium for the session, with what the tests read from it."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager, if ever asked, stays offline
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))

    def open(self, url: str) -> None:
        self.console_errors()  # forget what earlier pages logged
        self.set_color_scheme("light")
        self.driver.get(url)

    def console_errors(self) -> list[dict[str, Any]]:
        """The SEVERE entries of the browser's console since the last call (JavaScript errors,
        failed loads, Content-Security-Policy refusals)."""
        return [e for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def wait(self, condition: Any, timeout: float = 60, message: str = "") -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition, message)

    def set_color_scheme(self, scheme: str) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )

    def screenshots(self, name: str) -> list[Path]:
        """The page in light and dark, saved under tests/artifacts/ (paths printed)."""
        ARTIFACTS.mkdir(exist_ok=True)
        paths = []
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(WINDOW[0], max(WINDOW[1], min(height + 40, 4000)))  # the whole page
        for scheme in ("light", "dark"):
            self.set_color_scheme(scheme)
            path = ARTIFACTS / f"{name}-{scheme}.png"
            assert self.driver.save_screenshot(str(path)), path
            paths.append(path)
        self.set_color_scheme("light")
        self.driver.set_window_size(*WINDOW)
        print("screenshots:", *paths)
        return paths

    def quit(self) -> None:
        self.driver.quit()
