"""What the Byzantine miners of a native run achieved, for its summary."""

from __future__ import annotations

from ..node.verify import replay_last
from ..types import hexstr

__all__ = ["summarize_miner_attack"]


def summarize_miner_attack(net, miners, cfg, *, last: int = 6) -> dict:
    """What the Byzantine miners achieved, in numbers and in one plain sentence."""
    ref = net.reference
    byz_addresses = {m.node.miner for m in miners if m.byzantine}
    canonical = ref.canonical_hashes()
    byz_on_chain = sum(1 for h in canonical[1:] if ref.headers[h].miner in byz_addresses)
    observer = net.observer
    heavy_head = observer.head_hash if observer is not None else ref.head_hash
    heavy_is_honest = heavy_head in ref.headers  # honest nodes store every valid block, forks included
    heavy_height = observer.headers[heavy_head].height if observer is not None else ref.height
    cartel = None
    for m in miners:
        if m.byzantine:
            cartel = m.strategy.cartel
            break
    out = {
        "byzantine_miners": cfg.byzantine_miners,
        "byzantine_power": cfg.byzantine_power,
        "miner_attack": cfg.miner_attack,
        "byzantine_blocks_proposed": cartel.proposed if cartel else 0,
        "byzantine_blocks_on_honest_chain": byz_on_chain,
        "minted_identities": cartel.minted if cartel else 0,
        "honest_height": ref.height,
        "heaviest_chain_height": heavy_height,
        "heaviest_chain_accepted_by_honest": bool(heavy_is_honest),
        "heaviest_head_hash": hexstr(heavy_head),
    }
    if cfg.miner_attack == "withhold" and cartel is not None:
        out["withheld_forks_released"] = cartel.released
        out["withheld_forks_abandoned"] = cartel.abandoned
    honest_blocks = len(canonical) - 1 - byz_on_chain
    if not heavy_is_honest:
        verdict = (f"The heaviest chain by proof of work (height {heavy_height}) ends in blocks honest nodes "
                   f"refused; honest nodes, which validate, keep the true model at height {ref.height}. A holder "
                   f"that trusts the heaviest chain without checking reads a model that is not the honest one.")
    elif byz_on_chain:
        verdict = (f"{byz_on_chain} of {len(canonical) - 1} blocks on the honest chain were written by Byzantine "
                   f"miners and are valid by recomputation (the rules cannot see what they did: "
                   f"{cfg.miner_attack}); {len(net.rejected_blocks)} blocks were refused.")
    else:
        verdict = (f"Honest nodes refused {len(net.rejected_blocks)} Byzantine blocks; every block on the chain "
                   f"({honest_blocks}) is honest and the head model is the rule's result.")
    if cfg.byzantine_power > 0.5:
        verdict = (f"Byzantine miners hold a majority ({cfg.byzantine_power:.0%}) of the hash power, the case the "
                   f"paper says LearningChain cannot survive: " + verdict +
                   f" The honest chain grew {ref.height} blocks in {net.round} rounds.")

    s = cfg.verify_last
    honest_ok, _, _ = replay_last(ref, ref.head_hash, s)
    out["final_check"] = {"s": s, "honest_head_passes": honest_ok}
    if observer is not None and not heavy_is_honest:
        ok, bad, reason = replay_last(observer, heavy_head, s)
        out["final_check"]["heaviest_head_passes"] = ok
        out["final_check"]["heaviest_head_first_bad_height"] = bad
        out["final_check"]["heaviest_head_reason"] = reason
        verdict += (f" The holders' final check over the last {s} blocks of the heaviest chain "
                    + ("PASSES, so the wrong model survives it: " + (
                        "its blocks recompute correctly, but on messages no honest node ever received."
                        if cfg.miner_attack in ("forged-messages", "withhold") else
                        "the invalid block lies deeper than s.")
                       if ok else f"detects it ({reason} at height {bad})."))
    out["verdict"] = verdict
    return out
