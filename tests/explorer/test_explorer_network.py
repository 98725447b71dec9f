"""Three `learningchain node` processes: their /metrics for Prometheus, and the explorer
each serves on its status port, in headless Chromium while the network runs."""

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from learningchain.network.config import load_net_config
from learningchain.network.launcher import LocalNetwork, converged
from learningchain.node.store import open_readonly

from .browser import chromium, need_browser, screenshot

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers["Content-Type"], r.read()


def samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_agree_with_status_and_the_explorer_follows_a_live_network(tmp_path):
    need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    conf = load_net_config(None, train_overrides={"dataset": "synthetic", "holders": 6, "rounds": 40,
                                                  "epsilon": 1.0, "difficulty": 8},
                           network_overrides={"interval_ms": 0, "collect_ms": 300, "holder_delay_ms": 150})
    net = LocalNetwork(tmp_path, conf, 3)
    net.prepare()
    try:
        net.start()
        net.wait_for(lambda s: all(x and x["height"] >= 3 for x in s), 120, what="height 3 everywhere")
        base = f"http://{net.host}:{net.nodes[0].http_port}"

        # /metrics, read with the standard parser, against /status taken around it
        before = json.loads(get(base + "/status?eval=0")[1])
        ctype, text = get(base + "/metrics")
        after = json.loads(get(base + "/status?eval=0")[1])
        assert ctype.startswith("text/plain")
        m = samples(text.decode())
        assert before["height"] <= m[("learningchain_height", ())] <= after["height"]
        assert m[("learningchain_peers", ())] == len(after["peers"]) == 2
        assert before["blocks_mined"] <= m[("learningchain_blocks_mined_total", ())] <= after["blocks_mined"]
        assert before["blocks_received"] <= m[("learningchain_blocks_received_total", ())] <= after["blocks_received"]
        assert m[("learningchain_syncing", ())] in (0.0, 1.0)
        for reason, count in after["rejected_blocks"].items():
            assert m[("learningchain_blocks_refused_total", (("reason", reason),))] <= count

        # the explorer on the same port, while blocks keep coming
        with chromium() as driver:
            driver.get(base + "/")
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: d.find_element(By.ID, "height").text.isdigit())
            first = int(driver.find_element(By.ID, "height").text)
            assert driver.find_element(By.ID, "node-peers").text == "2"
            wait.until(lambda d: d.find_element(By.ID, "height").text.isdigit()
                       and int(d.find_element(By.ID, "height").text) >= first + 2)  # it updates by itself
            screenshot(driver, "explorer-node.png", tmp_path)
            # the newest block's row opens that block; blocks keep coming, so the list may have
            # grown (or been redrawn) since the head was read: follow the link actually clicked
            from selenium.common.exceptions import StaleElementReferenceException
            for _ in range(5):
                try:
                    link = driver.find_element(By.CSS_SELECTOR, "#blocks tbody tr.block-row a.block-link")
                    target = link.get_attribute("href").rsplit("/block/", 1)[1]
                    link.click()
                    break
                except StaleElementReferenceException:
                    continue
            wait.until(lambda d: d.find_element(By.ID, "block-height").text != "")
            assert driver.find_element(By.ID, "header-hash").text == target
            assert int(driver.find_element(By.ID, "block-height").text) >= first + 2
        final = net.wait_for(lambda s: converged(s, 40), 240, what="everyone at round 40")
    finally:
        codes = net.stop()
    assert all(c == 0 for c in codes.values()), codes
    store = open_readonly(net.nodes[0].dir)
    try:
        assert "0x" + store.head_hash().hex() == final[0]["head"]
        assert store.canonical_hash(int(0)) is not None
    finally:
        store.close()
