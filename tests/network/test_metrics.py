"""The node's Prometheus metrics, read back with prometheus_client's own parser."""

from prometheus_client.parser import text_string_to_metric_families

from learningchain.network.metrics import CONTENT_TYPE, NodeCollector, metrics_response

STATUS = {"height": 12, "head_timestamp_ms": 1_000_000, "peers": [{"id": "0x01"}, {"id": "0x02"}], "syncing": False,
          "mining": True, "mempool": 3, "blocks_mined": 5, "messages_sent": 7, "blocks_received": 9,
          "messages_received": 40, "rejected_blocks": {"bad-model": 2, "wrong-chain": 1},
          "rejected_messages": {"not-enrolled": 4}, "uptime_s": 10.0, "seconds_per_round": 0.8}


def parse(text: bytes) -> dict:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_every_metric_is_the_status_documents_number():
    code, ctype, body = metrics_response(lambda: STATUS)
    assert code == 200 and ctype == CONTENT_TYPE
    m = parse(body)
    assert m[("learningchain_height", ())] == 12
    assert m[("learningchain_peers", ())] == 2
    assert m[("learningchain_syncing", ())] == 0 and m[("learningchain_mining", ())] == 1
    assert m[("learningchain_mempool_messages", ())] == 3
    assert m[("learningchain_blocks_mined_total", ())] == 5
    assert m[("learningchain_blocks_received_total", ())] == 9
    assert m[("learningchain_messages_received_total", ())] == 40
    assert m[("learningchain_blocks_refused_total", (("reason", "bad-model"),))] == 2
    assert m[("learningchain_blocks_refused_total", (("reason", "wrong-chain"),))] == 1
    assert m[("learningchain_messages_refused_total", (("reason", "not-enrolled"),))] == 4
    assert m[("learningchain_mining_rate_blocks_per_second", ())] == 0.5
    assert m[("learningchain_round_seconds", ())] == 0.8


def test_head_age_is_measured_at_scrape_time():
    collector = NodeCollector(lambda: STATUS, clock=lambda: 1_030.5)
    ages = [f.samples[0].value for f in collector.collect() if f.name == "learningchain_head_age_seconds"]
    assert ages == [30.5]
