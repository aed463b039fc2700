"""The page of ``structrnn serve`` in a real browser: headless Chromium through Selenium (Debian's
``chromium`` and ``chromium-driver``; the test skips with the reason where either is missing).
It types a sentence and checks the drawn tree against ``predict``'s rows (every node's class and
colour, the probabilities on hover), types an invalid SMILES and an empty sentence and checks the
errors show in place, predicts a molecule, and saves screenshots in the test's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

import structrnn  # noqa: E402
from structrnn.serve.app import create_app  # noqa: E402
from tests.test_serve import PATIENCE_S, live, train_runs  # noqa: E402

# a run that learnt a little, so that the phrases get several colours
SENTIMENT = ["--dataset", "synthetic", "--synthetic-trees", "400", "--hidden", "32",
             "--embed-dim", "32", "--epochs", "3", "--no-progress"]
SENTENCE = "the movie felt extremely dull but its script is awful"


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("headless Chromium needs Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    return browser, driver


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,760", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(PATIENCE_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PATIENCE_S).until(condition)


def visible(element_id: str):
    from selenium.webdriver.common.by import By

    def check(driver):
        element = driver.find_element(By.ID, element_id)
        return element if element.is_displayed() else False

    return check


def test_the_page_draws_the_predicted_tree_and_shows_errors_in_place(tmp_path, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    runs = train_runs(tmp_path / "runs", SENTIMENT)
    sentiment = structrnn.load(runs["sst"])
    with live(create_app(runs)) as (base, _):
        browser.get(f"{base}/")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#models button"))
        browser.find_element(By.CSS_SELECTOR, "#models button[data-model='sst']").click()
        assert "balanced binary tree" in browser.find_element(By.ID, "tree-note").text

        box = browser.find_element(By.ID, "sentence")
        box.clear()
        box.send_keys(SENTENCE)
        browser.find_element(By.ID, "sentence-go").click()
        wait(browser, visible("sentence-result"))
        [row] = sentiment.predict([SENTENCE], nodes=True)
        nodes = browser.find_elements(By.CSS_SELECTOR, "#tree g.node")
        assert [int(n.get_attribute("data-label")) for n in nodes] == \
            [p["label"] for p in row["nodes"]]
        assert [n.get_attribute("data-span") for n in nodes] == [p["span"] for p in row["nodes"]]
        leaves = [n.text for n in browser.find_elements(By.CSS_SELECTOR, "#tree g.leaf text")]
        assert leaves == row["tokens"]
        legend = {int(e.get_attribute("data-label")): e.get_attribute("data-color")
                  for e in browser.find_elements(By.CSS_SELECTOR, "#legend span")}
        assert len(set(legend.values())) == len(sentiment.class_names)  # one colour a class
        fills = [n.find_element(By.TAG_NAME, "circle").get_attribute("fill") for n in nodes]
        assert fills == [legend[p["label"]] for p in row["nodes"]]
        assert row["label_name"] in browser.find_element(By.ID, "sentence-label").text

        ActionChains(browser).move_to_element(nodes[0].find_element(By.TAG_NAME, "circle")) \
            .perform()
        tip = wait(browser, visible("tooltip")).text
        for name, p in zip(sentiment.class_names, row["nodes"][0]["probs"], strict=True):
            assert name in tip and f"{100 * p:.1f}%" in tip
        browser.save_screenshot(str(tmp_path / "sentiment.png"))

        # a long sentence scrolls inside its box instead of widening the page
        box.clear()
        box.send_keys(" ".join([SENTENCE] * 6))
        browser.find_element(By.ID, "sentence-go").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tree g.leaf")) == 60)
        scroll = browser.find_element(By.ID, "tree-scroll")
        assert int(scroll.get_attribute("scrollWidth")) > int(scroll.get_attribute("clientWidth"))
        assert browser.execute_script("return document.documentElement.scrollWidth") <= \
            browser.execute_script("return window.innerWidth")

        box.clear()
        browser.find_element(By.ID, "sentence-go").click()
        error = wait(browser, visible("sentence-error"))
        assert "empty sentence" in error.text
        assert not browser.find_element(By.ID, "sentence-result").is_displayed()

        if "tpsa" in runs:
            molecules = structrnn.load(runs["tpsa"])
            browser.find_element(By.CSS_SELECTOR, "#models button[data-model='tpsa']").click()
            smiles = browser.find_element(By.ID, "smiles")
            smiles.clear()
            smiles.send_keys("C1CC(")
            browser.find_element(By.ID, "smiles-go").click()
            error = wait(browser, visible("smiles-error"))
            assert "invalid SMILES 'C1CC('" in error.text
            assert not browser.find_element(By.ID, "molecule-result").is_displayed()

            smiles.clear()
            smiles.send_keys("CC(=O)Oc1ccccc1C(=O)O")
            browser.find_element(By.ID, "smiles-go").click()
            wait(browser, visible("molecule-result"))
            assert not browser.find_element(By.ID, "smiles-error").is_displayed()
            [expected] = molecules.predict(["CC(=O)Oc1ccccc1C(=O)O"])
            cells = [c.text for c in browser.find_elements(
                By.CSS_SELECTOR, "#targets tr[data-target='tpsa'] td")]
            assert cells[0] == "tpsa" and cells[3] == "Å²"
            assert float(cells[1]) == pytest.approx(expected["tpsa"], rel=1e-3)
            assert float(cells[2].lstrip("± ")) == pytest.approx(expected["tpsa_std"],
                                                                  rel=1e-3)
            wait(browser, lambda d: d.execute_script(
                "const i = document.getElementById('drawing'); "
                "return i.complete && i.naturalWidth > 0"))
            browser.save_screenshot(str(tmp_path / "molecule.png"))

        # everything the page loaded came from this server
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(base) for url in loaded), loaded
    assert Path(tmp_path / "sentiment.png").stat().st_size > 0
