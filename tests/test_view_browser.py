"""`amc view` in a real headless browser: Debian's chromium driven by Selenium through chromedriver.

Both come from the system (scripts/test.sh installs `chromium` and `chromium-driver` with apt-get when they are
missing); nothing is downloaded at run time, and the browser is told not to reach the network on its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from amc.config import load_config
from amc.engine.runner import Runner
from amc.engine.store import read_records
from amc.records import FilterDecision
from amc.view import ViewSource, start

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("AMC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("AMC_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
)
GREEN, RED = "rgba(230, 244, 234, 1)", "rgba(252, 232, 230, 1)"  # .step.correct / .step.wrong backgrounds


def chromium_driver(profile: str) -> webdriver.Chrome:
    """A headless Debian chromium with a fresh profile; Selenium Manager is never asked to fetch anything."""
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def follow(browser: webdriver.Chrome, element) -> None:
    """Click something that loads a new page and wait until that page has replaced the old one.

    A click on a submit button or a link returns before the browser has navigated; reading `current_url` or finding
    elements straight after it races the navigation (CI once read the old URL on a loaded machine).
    """
    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(browser, 60)
    wait.until(EC.staleness_of(old))
    wait.until(lambda b: b.execute_script("return document.readyState") == "complete")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("view-browser")
    cfg = load_config(ROOT / "pipelines" / "quickstart.yaml", [f"run_dir={tmp}/run", "source.count=24"])
    Runner(cfg, show_progress=False).build("filter")
    return cfg.run_path


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="amc-chromium-")
    driver = chromium_driver(profile)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def url(run_dir):
    server, _ = start(ViewSource(run_dir))
    yield server.url
    server.shutdown()


def test_overview_filter_to_dropped_open_one_check_colours_and_reason(run_dir, browser, url):
    dropped = {
        d.id: d
        for f in sorted((run_dir / "filter" / "dropped").glob("*.parquet"))
        for d in read_records(f, FilterDecision)
    }
    browser.get(url)
    assert browser.find_element(By.ID, "funnel").is_displayed()
    images = browser.find_elements(By.CSS_SELECTOR, "img.plot")
    assert images and all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)

    follow(browser, browser.find_element(By.ID, "nav-rows"))
    Select(browser.find_element(By.ID, "f-stage")).select_by_value("filter")
    Select(browser.find_element(By.ID, "f-status")).select_by_value("dropped")
    follow(browser, browser.find_element(By.ID, "apply"))
    assert "status=dropped" in browser.current_url
    assert int(browser.find_element(By.ID, "total").text) == len(dropped)
    statuses = {b.text for b in browser.find_elements(By.CSS_SELECTOR, "#rows .badge")}
    assert statuses == {"dropped"}

    # open the first dropped row that the annotator judged with both verdicts, to see both colours
    links = browser.find_elements(By.CSS_SELECTOR, "a.rowlink")
    target = next(
        (link.text for link in links if len({v.correct for v in dropped[link.text].critique.step_verdicts}) == 2),
        links[0].text,
    )
    follow(browser, browser.find_element(By.LINK_TEXT, target))
    decision = dropped[target]
    assert browser.find_element(By.ID, "row-id").text == target
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(browser.current_url).query)["id"] == [target]
    assert browser.find_element(By.ID, "decision-text").text.startswith(f"dropped by {decision.reason}:")
    for v in decision.critique.step_verdicts:
        step = browser.find_element(By.ID, f"step-{v.index}")
        assert step.value_of_css_property("background-color") == (GREEN if v.correct else RED)
        assert step.get_attribute("data-verdict") == ("Correct" if v.correct else "Wrong")
    # nothing on the page came from anywhere but the viewer
    origins = browser.execute_script("return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) <= {url.rstrip("/")}
