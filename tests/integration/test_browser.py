"""The HTML report in a real browser: Debian's headless chromium enters an API key in the index's form, uploads a
deep sigmoid MLP through the upload form, waits on the audit's page until the report is there, and checks it: no
console errors, nothing loaded but the page, one mark per layer in the gradient-flow chart, the vanishing-gradient
finding's layers highlighted, an en dash for the parameters of a layer without any. It saves a screenshot in the
test's folder, and as docs/report.png with GRADAUDIT_WRITE_DOCS_SCREENSHOT=1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests
from torch import nn

from tests.conftest import missing_service
from tests.support import browser
from tests.support.keyed_serve import serving_with_a_key
from tests.support.stack import mlp, save_onnx

pytestmark = pytest.mark.integration

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "report.png"
AUDIT_TIMEOUT_S = 240
HIGHLIGHT = "rgb(146, 43, 33)"  # the stroke of a flagged layer's marks (gradaudit/templates/base.html)


@pytest.fixture
def chromium():
    """Headless chromium, or a skip (a failure in CI) naming what is missing."""
    if missing := browser.installed():
        missing_service(f"the browser test needs {missing}: apt-get install chromium chromium-driver")
    driver = browser.headless_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def served_with_keys(tmp_path):
    """`gradaudit serve` with API keys on, and the secret of one key."""
    with serving_with_a_key(tmp_path, "browser") as (url, secret):
        yield url, secret


def report_shown(driver) -> bool:
    """Whether the page shows the report; an AssertionError where it shows anything but a wait for it."""
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.ID, "verdict"):
        return True
    problems = driver.find_elements(By.ID, "problem")
    assert problems and problems[0].get_attribute("data-code") == "audit_not_finished", \
        f"{driver.current_url}: {driver.find_element(By.TAG_NAME, 'body').text[:2000]}"
    return False


def test_the_report_page_in_chromium(chromium, served_with_keys, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, secret = served_with_keys
    network = save_onnx(mlp(11, nn.Sigmoid), tmp_path / "deep-sigmoid.onnx")

    chromium.get(f"{url}/")
    chromium.find_element(By.ID, "api_key").send_keys(secret)
    chromium.find_element(By.CSS_SELECTOR, "#key-form button").click()
    # The key form posts and redirects back to the index: wait for that page's upload field, not the old page's.
    upload = WebDriverWait(chromium, 30, poll_frequency=0.2).until(
        lambda driver: next(iter(driver.find_elements(By.ID, "model")), None))
    upload.send_keys(str(network))
    chromium.find_element(By.CSS_SELECTOR, "#upload button").click()
    # The audit's page reloads itself until the report is there.
    WebDriverWait(chromium, AUDIT_TIMEOUT_S, poll_frequency=0.5).until(report_shown)
    page_url = chromium.current_url
    audit_id = page_url.split("/")[-2]
    report = requests.get(f"{url}/v1/audits/{audit_id}/report", headers={"Authorization": f"Bearer {secret}"},
                          timeout=30).json()

    chromium.get_log("browser")  # drop what the waiting page logged (its 409s)
    chromium.get(page_url)
    console = chromium.get_log("browser")
    loaded = chromium.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")

    assert page_url == f"{url}/v1/audits/{audit_id}/report.html"
    assert [entry for entry in console if entry["level"] == "SEVERE"] == []
    assert loaded == []
    assert chromium.find_element(By.ID, "verdict").text.lower() == report["verdict"] == "critical"

    marks = chromium.find_elements(By.CSS_SELECTOR, "#gradient-flow g.layer")
    assert [mark.get_attribute("data-layer") for mark in marks] == [layer["name"] for layer in report["layers"]]
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#gradient-flow g.layer .output-grad")) == len(marks)

    vanishing = next(finding for finding in report["findings"] if finding["code"] == "vanishing_gradient")
    flagged = chromium.find_elements(By.CSS_SELECTOR, "#gradient-flow g.layer.flagged")
    assert [mark.get_attribute("data-layer") for mark in flagged] == vanishing["layers"]
    strokes = {chromium.execute_script("return getComputedStyle(arguments[0]).stroke", point)
               for mark in flagged for point in mark.find_elements(By.CSS_SELECTOR, ".mark")}
    assert strokes == {HIGHLIGHT}
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#gradient-flow .flag-column")) == len(vanishing["layers"])

    sigmoid = next(layer["name"] for layer in report["layers"] if layer["parameters"] == 0)
    row = next(row for row in chromium.find_elements(By.CSS_SELECTOR, "#layers tbody tr")
               if row.get_attribute("data-layer") == sigmoid)
    assert row.find_element(By.CSS_SELECTOR, "td.parameters").text == "\u2013"

    screenshot = tmp_path / "report.png"
    assert chromium.save_screenshot(str(screenshot))
    if os.environ.get("GRADAUDIT_WRITE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)

    chromium.get(f"{url}/")
    listed = chromium.find_element(By.CSS_SELECTOR, f'#audits tr[data-audit="{audit_id}"]')
    assert "critical" in listed.text.lower()
