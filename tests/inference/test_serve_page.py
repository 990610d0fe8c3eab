"""The ``moalign serve`` playground in a real headless browser (Debian's Chromium driven by Selenium).

Moving a slider (with the keyboard, as a user does) keeps the weights on the simplex, sends them with the
request and shows the answer of exactly those weights -- the answer ``load_policy(DIR).generate`` gives. A
screenshot is saved to the test's folder, and also to ``$MOALIGN_SERVE_SCREENSHOT`` when that is set (how
docs/img/serve.png is made). Chromium and chromedriver come from Debian (``scripts/setup.sh`` installs them);
the test is skipped, saying so, only when they are absent.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from moalign.inference import load_policy
from tests.inference.serve_helpers import PROMPTS, running_server

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                                reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
                                       "/usr/bin/chromedriver); scripts/setup.sh installs them as root")
MAX_TOKENS = 12


@pytest.fixture()
def browser(tmp_path, monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,640", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _answer(driver) -> tuple[str, list[float] | None]:
    element = driver.find_element("id", "answer")
    weights = element.get_attribute("data-weights")
    return element.text, (json.loads(weights) if weights else None)


def _wait_for_answer(driver, weights: list[float], timeout: float = 120.0) -> str:
    """The shown answer once the page's latest request is answered; it must be the answer at ``weights``."""
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d):
        if d.find_element("tag name", "body").get_attribute("data-busy") != "0":
            return False  # a request is scheduled or in flight
        text, at = _answer(d)
        assert at == pytest.approx(weights), f"the page shows the answer at {at}, expected {weights}"
        return text

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(shown)


def _slider_values(driver) -> list[int]:
    return [int(e.get_attribute("value")) for e in driver.find_elements("css selector", "#sliders input")]


def test_moving_a_slider_changes_the_weights_and_the_answer(browser, folders, tmp_path):
    from selenium.webdriver.common.keys import Keys

    folder = folders["mopo_low_rank"]
    reference = load_policy(folder)
    prompt = PROMPTS[2]  # its answers differ at (1, 0), (0.7, 0.3) and (0.5, 0.5)

    def expected(weights):
        return reference.generate([prompt], weights, max_new_tokens=MAX_TOKENS, precision="fp32")[0]

    assert expected([1.0, 0.0]) != expected([0.7, 0.3]), "the tiny heads agree: the test would be vacuous"
    with running_server(folder) as (url, server):
        browser.get(url + "/")
        _wait_for_answer(browser, [0.5, 0.5])  # the page asks once on load, at equal weights
        labels = [e.text for e in browser.find_elements("css selector", "#sliders label")]
        assert labels == ["helpful", "short"]  # one slider per objective, named by the policy
        tokens = browser.find_element("id", "max-tokens")
        tokens.clear()
        tokens.send_keys(str(MAX_TOKENS))
        box = browser.find_element("id", "prompt")
        box.clear()
        box.send_keys(prompt)  # typing asks again (debounced)
        assert _wait_for_answer(browser, [0.5, 0.5]) == expected([0.5, 0.5])

        slider = browser.find_element("id", "w-0")
        slider.send_keys(Keys.END)  # helpful to 1: short must drop to 0
        assert _slider_values(browser) == [100, 0]
        assert json.loads(browser.find_element("id", "weights").text) == [1, 0]
        first = _wait_for_answer(browser, [1.0, 0.0])
        assert first == expected([1.0, 0.0])

        for _ in range(30):  # helpful 1 -> 0.7, one step at a time, as a user holding the arrow key
            slider.send_keys(Keys.ARROW_LEFT)
        assert _slider_values(browser) == [70, 30]
        second = _wait_for_answer(browser, [0.7, 0.3])
        assert second == expected([0.7, 0.3]) and second != first  # the shown answer changed with the weights
        assert server.requests_served >= 4
        shot = tmp_path / "serve.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
        if os.environ.get("MOALIGN_SERVE_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["MOALIGN_SERVE_SCREENSHOT"])
