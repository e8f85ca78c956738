"""Debian's chromium, headless, driven by selenium through Debian's chromedriver: no download, no network."""

from __future__ import annotations

import shutil

CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"
WIDTH = 1280


def installed() -> str | None:
    """None where chromium, its driver and selenium are all here; else what is missing."""
    missing = [name for name in (CHROMIUM, CHROMEDRIVER) if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    return ", ".join(missing) or None


def headless_chromium(height: int = 1800):
    """A headless chromium WIDTH pixels wide that keeps the page's console messages."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(CHROMIUM)
    # --no-sandbox: CI runs as root, where chromium's own sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--hide-scrollbars", f"--window-size={WIDTH},{height}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which(CHROMEDRIVER)))
