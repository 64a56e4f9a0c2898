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
    ("odd/id #1 x", "Seoul Kitchen", "ko", 0.88, 7, "Korean-speaking guests praise the kimchi jjigae."),
    ("odd/id #1 x", "Seoul Kitchen", "zh", 0.7, 5, "W" * 5000),  # one 5,000-character word
    ("b-long", "N" * 5000, "en", 0.9, 4, "A name of one long word."),
]
SIZES = [(360, 740), (390, 844), (1366, 768)]
HOSTILE = '<img src=x onerror="document.title=1">'
TERMS = {  # (business_id, group) -> distinctive terms (term, z) and one quote
    ("b-casa", "en"): ([("butter chicken", 3.1), ("garlic naan", 2.4)], "The butter chicken was rich and creamy."),
    ("b-casa", "hi"): ([("dal", 2.9), ("spice level", 2.2)], "The dal tastes like home."),
    ("odd/id #1 x", "ko"): ([(HOSTILE, 2.5), ("X" * 3000, 2.1)], f"Odd {HOSTILE} quote " + "Q" * 3000),
    ("odd/id #1 x", "zh"): ([("dumplings", 2.0)], "Dumplings, " + "very " * 100 + "good."),
}


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
    def contrast(b, g):
        terms, quote = TERMS.get((b, g), ([], None))
        return {"distinctive_terms": [{"term": t, "z": z, "count": 3} for t, z in terms],
                "quotes": [{"term": terms[0][0], "text": quote}] if quote else [],
                "contrast_note": None if terms else "the only group of its restaurant: nothing to contrast with"}

    table = pa.Table.from_pylist(
        [{"id": f"{b}-{g}", "business_id": b, "name": n, "group": g, "group_confidence": c, "n_reviews": k,
          "summary": s, "model": export, "model_sha256": "x", "generation": "{}", **contrast(b, g)}
         for b, n, g, c, k, s in ROWS], schema=OUTPUT_SCHEMA)
    pq.write_table(table, tmp_path / "summaries.parquet")
    server = Server(tmp_path, [f"model.name_or_path={export}", f"serve.summaries={tmp_path / 'summaries.parquet'}",
                               "serve.min_group_reviews=3", "generation.max_new_tokens=10",
                               "generation.min_new_tokens=4"])
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    return driver


def overflow(driver) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no horizontal scrolling)."""
    return driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")


def console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_pick_a_restaurant_and_read_its_group_summaries(app_server, tmp_path):
    chromium_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(1280, 900)
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(app_server.url + "/app")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#restaurants button")) == 4)
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
        # readable names, the code in a tooltip
        assert cards["en"].startswith("English") and cards["hi"].startswith("Hindi")
        # what sets each group apart: its terms and a quote; a group without terms shows none
        assert "Mentioned more by this group than by the others" in cards["en"]
        assert "butter chicken" in cards["en"] and "\u201cThe butter chicken was rich and creamy.\u201d" in cards["en"]
        assert "dal" in cards["hi"] and "Mentioned more" not in cards["fr"]
        about = driver.find_element(By.ID, "about").text
        assert "machine-written" in about and "language they originally wrote in" in about
        assert driver.find_element(By.CSS_SELECTOR, '.card[data-group="hi"] abbr').get_attribute("title").endswith("hi")
        # the groups side by side on a desktop: the first two cards share a row
        tops = [c.location["y"] for c in driver.find_elements(By.CSS_SELECTOR, ".card.group")[:2]]
        assert tops[0] == tops[1], tops
        screenshot = tmp_path / "app.png"
        assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")

        driver.find_element(By.ID, "own-reviews").send_keys("Great dosa, crisp and hot.\n\nFriendly owner, fair prices.")
        driver.find_element(By.ID, "own-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "own-result").text not in ("", "Summarizing..."))
        assert driver.find_element(By.ID, "own-result").get_attribute("class") != "error"
        assert driver.save_screenshot(str(tmp_path / "app-own-reviews.png"))
        assert console_errors(driver) == []
    finally:
        driver.quit()


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_fits_phone_and_desktop_with_long_words_and_odd_ids(app_server, tmp_path, width, height):
    chromium_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(width, height)
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(app_server.url + "/app")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#restaurants button")) == 4)
        assert overflow(driver) == 0  # with a 5,000-character restaurant name in the list
        driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="odd/id #1 x"]').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "restaurant-name"), "Seoul Kitchen"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.group")) == 2)
        cards = {c.get_attribute("data-group"): c for c in driver.find_elements(By.CSS_SELECTOR, ".card.group")}
        assert cards["ko"].find_element(By.TAG_NAME, "h3").text == "Korean"
        assert cards["zh"].find_element(By.TAG_NAME, "h3").text == "Chinese"
        assert "kimchi" in cards["ko"].text and "W" * 100 in cards["zh"].text
        assert overflow(driver) == 0  # with a 5,000-character word in a summary
        # terms and a quote on each card, hostile ones as text (no element made, no script run), long ones wrapped
        for card in cards.values():
            assert "Mentioned more by this group" in card.text and card.find_elements(By.CSS_SELECTOR, "blockquote")
        terms = [li.text for li in cards["ko"].find_elements(By.CSS_SELECTOR, ".terms li")]
        assert terms[0] == HOSTILE and terms[1] == "X" * 3000
        assert HOSTILE in cards["ko"].find_element(By.TAG_NAME, "blockquote").text
        assert not driver.find_elements(By.CSS_SELECTOR, "#groups img") and driver.title != "1"  # no onerror ran
        for element in driver.find_elements(By.CSS_SELECTOR, ".terms li, blockquote"):
            assert element.rect["x"] >= 0 and element.rect["x"] + element.rect["width"] <= width
        for card in cards.values():
            assert card.rect["x"] >= 0 and card.rect["x"] + card.rect["width"] <= width
        assert driver.find_element(By.ID, "groups").get_attribute("aria-live") == "polite"
        driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="b-long"]').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "restaurant-name"), "NNNN"))
        assert overflow(driver) == 0  # a 5,000-character name as the heading
        driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="odd/id #1 x"]').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "restaurant-name"), "Seoul Kitchen"))
        shot = tmp_path / f"app-{width}x{height}.png"
        assert driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        assert console_errors(driver) == []
    finally:
        driver.quit()


def test_ids_with_any_character_work_over_the_api(app_server):
    from urllib.parse import quote

    from .serving_helpers import request

    for url in (f"/api/restaurants/{quote('odd/id #1 x', safe='')}", f"/api/restaurant?id={quote('odd/id #1 x')}"):
        status, _, raw = request(app_server.url + url)
        assert status == 200 and b"Seoul Kitchen" in raw, (url, raw[:200])


def in_view(driver, element) -> bool:
    """The element's top edge is inside the viewport."""
    return driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return r.top >= 0 && r.top < window.innerHeight;", element)


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_a_tap_shows_the_cards_each_restaurant_has_its_url_and_back_forward_work(app_server, tmp_path, width,
                                                                                 height):
    chromium_or_skip()
    from urllib.parse import quote

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(width, height)
    try:
        wait = WebDriverWait(driver, 20)
        heading = (By.ID, "restaurant-name")
        driver.get(app_server.url + "/app")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#restaurants button")) == 4)
        # the explanation of groups and confidence, and the machine-written line
        driver.find_element(By.CSS_SELECTOR, "#explain summary").click()
        explained = driver.find_element(By.ID, "explain-text").text
        assert "A group is the reviewers of this restaurant" in explained and "Confidence:" in explained
        assert "language they originally wrote in" in explained and "fewer than 3 reviews" in explained
        assert not driver.find_element(By.ID, "demo").is_displayed()  # not the quickstart's demo model

        driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="b-casa"]').click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.group")) == 4)
        wait.until(ec.text_to_be_present_in_element(heading, "Casa Indian Kitchen"))
        # tap -> the cards in view (below the list on a phone, so the page scrolls to them)
        wait.until(lambda d: in_view(d, d.find_element(By.CSS_SELECTOR, ".card.group")))
        assert "restaurant=b-casa" in driver.current_url and driver.title.startswith("Casa Indian Kitchen")
        selected = driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="b-casa"]')
        assert selected.get_attribute("aria-current") == "true"
        other = driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="b-taco"]')
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", other)
        ActionChains(driver).move_to_element(other).perform()
        hovered, chosen = (b.value_of_css_property("background-color") for b in (other, selected))
        assert hovered != chosen and "0, 0, 0, 0" not in hovered  # hover and selected look different
        assert overflow(driver) == 0

        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                              driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="odd/id #1 x"]'))
        driver.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="odd/id #1 x"]').click()
        wait.until(ec.text_to_be_present_in_element(heading, "Seoul Kitchen"))
        assert "restaurant=" + quote("odd/id #1 x", safe="").replace("%20", "+") in driver.current_url \
            or "restaurant=odd%2Fid+%231+x" in driver.current_url
        driver.back()
        wait.until(ec.text_to_be_present_in_element(heading, "Casa Indian Kitchen"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.group")) == 4)
        driver.forward()
        wait.until(ec.text_to_be_present_in_element(heading, "Seoul Kitchen"))

        # a shared link opens the same view, in a fresh page
        link = driver.current_url
        driver.get("about:blank")
        driver.get(link)
        wait.until(ec.text_to_be_present_in_element(heading, "Seoul Kitchen"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.group")) == 2)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#restaurants button[data-id="odd/id #1 x"]')
                   .get_attribute("aria-current") == "true")
        driver.get(app_server.url + "/app?restaurant=nope")
        wait.until(ec.text_to_be_present_in_element(heading, "not in the list"))
        assert driver.save_screenshot(str(tmp_path / f"app-flow-{width}.png"))
        assert console_errors(driver) == [] or all("404" in e["message"] for e in console_errors(driver))
    finally:
        driver.quit()


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_keyboard_only(app_server, width, height):
    chromium_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(width, height)
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(app_server.url + "/app")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#restaurants button")) == 4)
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)  # the search box
        assert driver.switch_to.active_element.get_attribute("id") == "search"
        driver.switch_to.active_element.send_keys("seoul")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#restaurants button")) == 1)
        driver.switch_to.active_element.send_keys(Keys.TAB)  # the one restaurant left
        assert driver.switch_to.active_element.get_attribute("data-id") == "odd/id #1 x"
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait.until(ec.text_to_be_present_in_element((By.ID, "restaurant-name"), "Seoul Kitchen"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.group")) == 2)
        # the focus moves to the restaurant's heading, so the next Tab goes on from the cards
        assert driver.switch_to.active_element.get_attribute("id") == "restaurant-name"
        driver.switch_to.active_element.send_keys(Keys.TAB)  # the explanation
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        assert driver.find_element(By.ID, "explain").get_attribute("open") is not None
        driver.switch_to.active_element.send_keys(Keys.TAB)  # the own-reviews box
        assert driver.switch_to.active_element.get_attribute("id") == "own-reviews"
        driver.switch_to.active_element.send_keys(Keys.TAB, Keys.ENTER)  # Summarize, with nothing pasted
        wait.until(lambda d: "Paste at least one review first" in d.find_element(By.ID, "own-result").text)
    finally:
        driver.quit()


def test_the_demo_model_is_named_and_errors_are_in_plain_words(tmp_path, tokenizer):
    """An export whose composed config says it is the quickstart: the page says so; with an API key required and
    none sent, summarizing pasted reviews says what is needed in words a diner understands."""
    chromium_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    export = save_pretrained(build_tiny_led(tokenizer), tokenizer, str(tmp_path / "model"),
                             config_yaml="task_name: quickstart\nmodel:\n  _target_: flavorfusion.models.summarizer."
                                         "Summarizer.from_tiny_config\n")
    server = Server(tmp_path, [f"model.name_or_path={export}", "serve.api_key_env=FF_TEST_KEY"],
                    env={"FF_TEST_KEY": "k-123"})
    try:
        server.wait_healthy()
        driver = browser(390, 844)
        try:
            wait = WebDriverWait(driver, 20)
            driver.get(server.url + "/app")
            wait.until(lambda d: d.find_element(By.ID, "demo").is_displayed())
            assert "Demo model" in driver.find_element(By.ID, "demo").text
            driver.find_element(By.ID, "own-reviews").send_keys("Great dosa.\n\nFriendly owner.")
            driver.find_element(By.ID, "own-submit").click()
            wait.until(lambda d: "needs an API key" in d.find_element(By.ID, "own-result").text)
            assert "Bearer" not in driver.find_element(By.ID, "own-result").text  # not the API's wording
        finally:
            driver.quit()
    finally:
        server.stop()
