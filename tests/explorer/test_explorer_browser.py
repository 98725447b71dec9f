"""The explorer in a real browser (headless Chromium through Selenium) for a finished run."""

import json

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.experiments.train import run_training
from learningchain.node.store import open_readonly

from .browser import chromium, explorer_server, need_browser, screenshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    need_browser()
    out = tmp_path_factory.mktemp("explore") / "run"
    run_training(TrainConfig(out=str(out), dataset="synthetic", rounds=30, epsilon=1.0, byzantine=5, progress=False))
    return out


def wait_text(driver, css, expected, timeout=20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, css).text == expected,
                                          f"{css} never showed {expected!r}")


def test_the_explorer_shows_what_summary_and_chain_head_say_and_follows_a_block_link(finished_run, tmp_path):
    from selenium.webdriver.common.by import By

    summary = json.loads((finished_run / "summary.json").read_text())
    store = open_readonly(finished_run)
    try:
        head = store.get(store.head_hash())
        block_20 = store.get(store.canonical_hash(20))
    finally:
        store.close()
    assert summary["head_hash"] == "0x" + head.hash.hex()
    with explorer_server(finished_run) as url, chromium() as driver:
        driver.get(url + "/")
        wait_text(driver, "#height", str(summary["height"]))
        assert driver.find_element(By.ID, "head-hash").text == summary["head_hash"]
        assert driver.find_element(By.ID, "test-error").text == f"{summary['test_error']:.4f}"
        assert driver.find_element(By.ID, "baseline-error").text == f"{summary['baseline_test_error']:.4f}"
        assert driver.find_element(By.ID, "epsilon").text == f"{summary['epsilon_total']:.3f}"
        rows = driver.find_elements(By.CSS_SELECTOR, "#blocks tbody tr.block-row")
        assert [int(r.get_attribute("data-height")) for r in rows] == list(range(30, 5, -1))  # newest 25
        paths = driver.find_elements(By.CSS_SELECTOR, "#chart-svg path.series")
        assert {p.get_attribute("data-name") for p in paths} == {"test error", "training loss", "baseline test error"}
        screenshot(driver, "explorer-run.png", tmp_path)

        row = next(r for r in rows if r.get_attribute("data-height") == "20")
        row.find_element(By.CSS_SELECTOR, "a.block-link").click()
        wait_text(driver, "#block-height", "20")
        assert driver.find_element(By.ID, "header-hash").text == "0x" + block_20.hash.hex()
        assert driver.find_element(By.ID, "header-miner").text == "0x" + block_20.header.miner.hex()
        msgs = driver.find_elements(By.CSS_SELECTOR, "#messages tbody tr.msg")
        assert len(msgs) == len(block_20.messages)
        chosen = [i for i, r in enumerate(msgs) if "selected" in r.get_attribute("class").split()]
        assert chosen == list(block_20.selection)
        norms = [float(r.find_elements(By.TAG_NAME, "td")[2].text) for r in msgs]
        np.testing.assert_allclose(norms, [m.norm for m in block_20.messages], rtol=1e-5)
        screenshot(driver, "explorer-block.png", tmp_path)

        driver.find_element(By.ID, "header-parent").find_element(By.TAG_NAME, "a").click()
        wait_text(driver, "#block-height", "19")
