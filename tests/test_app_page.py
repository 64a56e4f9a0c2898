"""The app page in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium
against `python -m flavorfusion.serve serve.summaries=...` with a small summarize-style Parquet written here.
Without Chromium the test fails in CI (CI=true: .ci/run installs it) and is skipped elsewhere."""

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flavorfusion.models.loading import save_pretrained
from flavorfusion.models.tiny import build_tiny_led
from flavorfusion.summarization import OUTPUT_SCHEMA

from .serving_helpers import Server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

ROWS = [  # (business_id, name, group, confidence, n_reviews, summary)
    ("b-casa", "Casa Indian Kitchen", "en", 0.93, 14, "English-speaking guests love the rich butter chicken and "
     "the fresh garlic naan, but say weekend service is slow."),
    ("b-casa", "Casa Indian Kitchen", "hi", 0.81, 6, "Hindi-speaking reviewers find the dal close to home cooking "
     "and the spice level honest."),
    ("b-casa", "Casa Indian Kitchen", "es", 0.66, 2, "too few reviews to trust"),
    ("b-casa", "Casa Indian Kitchen", "fr", 0.7, 4, None),
    ("b-taco", "Taqueria Sol", "es", 0.9, 9, "Los clientes hispanohablantes elogian las tortillas hechas a mano."),
]


def chromium_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = (f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
                   "(apt-get install -y chromium chromium-driver), as .ci/run does")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def app_server(tmp_path, tokenizer):
    export = save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path / "model"))
    table = pa.Table.from_pylist(
        [{"id": f"{b}-{g}", "business_id": b, "name": n, "group": g, "group_confidence": c, "n_reviews": k,
          "summary": s, "model": export, "model_sha256": "x", "generation": "{}"} for b, n, g, c, k, s in ROWS],
        schema=OUTPUT_SCHEMA)
    pq.write_table(table, tmp_path / "summaries.parquet")
    server = Server(tmp_path, [f"model.name_or_path={export}", f"serve.summaries={tmp_path / 'summaries.parquet'}",
                               "serve.min_group_reviews=3", "generation.max_new_tokens=10",
                               "generation.min_new_tokens=4"])
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def test_pick_a_restaurant_and_read_its_group_summaries(app_server, tmp_path):
    chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(app_server.url + "/app")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#restaurants button")) == 2)
        driver.find_element(By.ID, "search").send_keys("casa")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#restaurants button")) == 1)
        driver.find_element(By.CSS_SELECTOR, "#restaurants button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "restaurant-name"), "Casa Indian Kitchen"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.group")) == 4)
        cards = {c.get_attribute("data-group"): c.text for c in driver.find_elements(By.CSS_SELECTOR, ".card.group")}
        assert "butter chicken" in cards["en"] and "14 reviews" in cards["en"] and "confidence 93%" in cards["en"]
        assert "dal close to home" in cards["hi"] and "6 reviews" in cards["hi"]
        assert "Not enough reviews" in cards["es"] and "too few reviews to trust" not in cards["es"]  # 2 < 3
        assert "Not enough reviews" in cards["fr"]  # no summary in the output
        screenshot = tmp_path / "app.png"
        assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")

        driver.find_element(By.ID, "own-reviews").send_keys("Great dosa, crisp and hot.\n\nFriendly owner, fair prices.")
        driver.find_element(By.ID, "own-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "own-result").text not in ("", "Summarizing..."))
        assert driver.find_element(By.ID, "own-result").get_attribute("class") != "error"
        assert driver.save_screenshot(str(tmp_path / "app-own-reviews.png"))
    finally:
        driver.quit()
