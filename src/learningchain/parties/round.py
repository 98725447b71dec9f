"""The holders' side of a round, the same under every driver.

:func:`collect_messages` is every holder's answer to one head, honest and
Byzantine, in holder order; :class:`AnswerOnce` is the rule that a holder
answers each head once (a second message on the same head would spend privacy
budget again and could be counted twice).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Hashable, Iterable, Optional

from ..attacks.holders import AttackContext
from ..crypto import PrivateKey
from ..errors import InvalidMessage
from ..holder import holders_within_budget, make_messages

__all__ = ["AnswerOnce", "collect_messages"]


class AnswerOnce:
    """Holders answer each head once.

    A head is named by a key: a block hash on the native chain, the contract's
    round on Ethereum. :meth:`claim` is true the first time it sees a key and
    false ever after, so a driver that steps again on the same head (a round
    whose block honest nodes refused) does not make its holders send twice.
    ``answered`` seeds the keys already answered (a node restarting from its
    log), ``on_claim`` is told each new one (to persist it), and only the last
    ``remember`` keys are kept: a head, once left, never comes back as the head
    (the heaviest chain only gains work).
    """

    def __init__(self, answered: Iterable[Hashable] = (), *, remember: int = 64,
                 on_claim: Optional[Callable[[Hashable], None]] = None):
        if remember < 1:
            raise ValueError(f"remember must be >= 1, got {remember}")
        self.remember = remember
        self.on_claim = on_claim
        self._answered: "OrderedDict[Hashable, None]" = OrderedDict()
        for key in answered:
            self._remember(key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._answered

    def _remember(self, key: Hashable) -> None:
        self._answered[key] = None
        while len(self._answered) > self.remember:
            self._answered.popitem(last=False)

    @property
    def answered(self) -> list:
        """The keys remembered, oldest first."""
        return list(self._answered)

    def claim(self, key: Hashable) -> bool:
        """True (and ``key`` is recorded) when no answer to ``key`` was sent yet."""
        if key in self._answered:
            return False
        self._remember(key)
        if self.on_claim is not None:
            self.on_claim(key)
        return True


def collect_messages(holders: list, attacks: dict, base, byzantine_identities: set, *, batch: bool = True) -> list:
    """Every holder's messages for the round on ``base``, honest and Byzantine, in holder order.

    Shared by every driver (the in-process network, the Ethereum backend): honest
    holders compute their gradients together (:func:`make_messages`); each Byzantine
    holder's attack returns its vectors, which are signed like honest ones, and the
    identities they use are added to ``byzantine_identities``.
    """
    reports = {}
    honest_vectors = []
    honest = holders_within_budget([h for h in holders if h.index not in attacks], base)
    # only an omniscient attack reads the honest gradients (K vectors of d floats)
    keep = any(a.omniscient for a in attacks.values())
    if batch:
        made = make_messages(honest, base, keep_gradients=keep)
    else:
        made = [h.abstain_or_message(base) for h in honest]
    for holder, report in zip(honest, made):
        if report is None:
            continue  # nothing to send this round (a zero gradient): the holder abstains
        reports[holder.index] = [report.message]
        if keep:
            honest_vectors.append(report.honest_gradient)
    for holder in holders:
        attack = attacks.get(holder.index)
        if attack is not None:
            reports[holder.index] = _byzantine_messages(holder, attack, base, honest_vectors, len(attacks),
                                                        len(holders), byzantine_identities)
    return [m for idx in sorted(reports) for m in reports[idx]]


def _byzantine_messages(holder, attack, base, honest_vectors: list, byz_count: int, holders: int,
                        byzantine_identities: set) -> list:
    own = {}

    def own_gradient():
        if "g" not in own:
            grad, _, _ = holder.local_gradient(base)
            own["g"] = holder.privatize(grad, base)
        return own["g"]

    ctx = AttackContext(round=base.height, dim=holder.params.dim, rng=holder.rng, own_gradient=own_gradient,
                        honest=honest_vectors if attack.omniscient else None, byzantine_count=byz_count,
                        holders=holders, holder=holder, base=base)
    msgs = []
    for j, vector in enumerate(attack(ctx)):
        key = holder.next_key() if j == 0 else None
        if key is None:
            key = PrivateKey.generate(holder.rng)
        try:
            msg = holder.sign(vector, base, key=key)
        except InvalidMessage:
            continue  # a vector that cannot even be encoded is never sent
        byzantine_identities.add(msg.identity)
        msgs.append(msg)
    return msgs
