"""The LearningChain protocol driven through a deployed contract.

:class:`Deployment` is a client of one deployed contract: it deploys it (the
genesis: every protocol parameter and the initial model), reads the round, the
model and the round's messages from the chain, and sends the holders' and
computing nodes' transactions.

:class:`EthereumNetwork` is the driver that plays one round at a time, the
counterpart of :class:`~learningchain.network.simulation.InProcessNetwork`:
every holder reads the current model from the chain, computes its message
(the same :func:`~learningchain.parties.collect_messages` the native chain
uses, and answers each round once, :class:`~learningchain.parties.AnswerOnce`), and sends it from a fresh pseudo-identity account that a faucet
funds; then one computing node, drawn at random, reads the round's messages
back from the contract's events, computes the l-nearest selection with the
Python rule, has the contract aggregate the round (the contract recomputes
the selection and refuses a wrong one) and collects its reward.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from web3.logs import DISCARD

from ..crypto import PrivateKey, keccak256
from ..errors import ConfigError, InvalidMessage
from ..parties import AnswerOnce, collect_messages
from . import fixedpoint as fp
from .chain import Account, Chain, EthereumError, Reverted
from .contract import ContractParams, load_artifact
from .keystore import write_private

__all__ = ["Deployment", "EthereumNetwork", "EthHead", "EthRound", "new_account", "chain_fields", "KEYS_SEEDED",
           "KEYS_SECURE", "KEYS_KEYSTORE", "replay_model", "replay_round", "JOURNAL"]

#: Initial model values per ``load_model`` call.
LOAD_BATCH = 1024


KEYS_SEEDED = "numpy PCG64 seeded from --seed and the contract address (in-process EVM; not secret)"
KEYS_SECURE = "secrets (the OS CSPRNG)"
KEYS_KEYSTORE = ("secrets (the OS CSPRNG), kept encrypted in keys/ (pseudo-identities: HMAC-SHA256 of a secret "
                 "kept there)")
#: The messages of the round being sent, written before the first is sent (resume).
JOURNAL = "round-messages.json"
EMBEDDED_LABELS = {"pyrevm": "embedded EVM (pyrevm, revm)", "py-evm": "embedded EVM (eth-tester, py-evm)"}


def chain_fields(chain: Chain, seeded: bool, keystore: bool = False) -> dict:
    """What a run's summary says of its chain and its keys, in either mode."""
    label = EMBEDDED_LABELS.get(chain.evm, "embedded EVM") if chain.kind == "embedded" else chain.url
    keys = KEYS_SEEDED if seeded else KEYS_KEYSTORE if keystore else KEYS_SECURE
    return {"key_generator": keys, "chain_id": chain.chain_id, "chain": label}


def new_account(rng: Optional[np.random.Generator] = None, label: str = "") -> Account:
    """A fresh secp256k1 account: from the OS CSPRNG (``secrets``), or drawn from ``rng``
    where one is given (reproducible from the run's seed: the in-process EVM only)."""
    return Account.from_secret(PrivateKey.generate(rng).secret, label)


@dataclass(frozen=True)
class EthHead:
    """The contract's current state, shaped like a block for the holders: ``height`` is the
    round, ``model`` the float view of the stored model, ``hash`` the hash of the block
    that holds the last aggregation (or the opening of the run)."""

    height: int
    model: np.ndarray
    fixed: tuple  # the stored fixed-point model W
    hash: bytes
    block_number: int


@dataclass
class EthRound:
    round: int
    winner: int
    head: EthHead
    head_changed: bool
    selection: tuple
    messages: int
    byzantine_selected: int
    rejections: Counter
    messages_rejected: Counter
    gas_submit: list
    gas_aggregate: int
    gas_claim: int
    seconds: float


class Deployment:
    """One deployed LearningChain contract and the calls the protocol makes on it."""

    def __init__(self, chain: Chain, address: str, cparams: ContractParams, *, block: int = 0):
        self.chain = chain
        self.artifact = load_artifact()
        self.address = address
        self.cparams = cparams
        self.rule = cparams.rule
        self.contract = chain.w3.eth.contract(address=address, abi=self.artifact["abi"])
        self.deploy_block = block
        self.setup_gas: dict = {}  # gas of the deployment, the loading of w_0 and the opening

    # -- the genesis ------------------------------------------------------------------
    @classmethod
    def deploy(cls, chain: Chain, owner: Account, cparams: ContractParams, w0: np.ndarray) -> "Deployment":
        """Deploy the contract, load w_0 and open round 0."""
        artifact = load_artifact()
        start = chain.block_number()
        address, deploy_gas = chain.deploy(owner, artifact["abi"], artifact["bytecode"], cparams.constructor_args(),
                                           with_gas=True)
        dep = cls(chain, address, cparams, block=start)
        W = fp.encode_model(w0)
        load_gas = 0
        for off in range(0, len(W), LOAD_BATCH):
            load_gas += int(chain.call_tx(owner, dep.contract, "load_model", off, W[off:off + LOAD_BATCH])["gasUsed"])
        open_gas = int(chain.call_tx(owner, dep.contract, "open_run")["gasUsed"])
        dep.setup_gas = {"deploy": deploy_gas, "load_model": load_gas, "open_run": open_gas}
        return dep

    # -- reads ---------------------------------------------------------------------------
    @property
    def abi(self) -> list:
        return self.artifact["abi"]

    def current_round(self) -> int:
        return int(self.chain.read(self.contract, "current_round"))

    def round_opened(self) -> int:
        """The block in which the current round opened."""
        return int(self.chain.read(self.contract, "round_opened"))

    def fixed_model(self) -> list[int]:
        return [int(v) for v in self.chain.read(self.contract, "get_model")]

    def head(self, from_block: Optional[int] = None) -> EthHead:
        """The current round and model; ``from_block``: no earlier block holds the event that
        opened the current round (spares a search of the whole chain)."""
        rnd = self.current_round()
        W = self.fixed_model()
        since = self.deploy_block if from_block is None else from_block
        if rnd == 0:
            logs = self.chain.events(self.contract, "RoundOpened", from_block=since, argument_filters={"round": 0})
        else:
            logs = self.chain.events(self.contract, "Aggregated", from_block=since,
                                     argument_filters={"round": rnd - 1})
        if not logs:
            raise ConfigError(f"the contract at {self.address} has no event for round {rnd}")
        last = logs[-1]
        return EthHead(rnd, fp.decode_model(W), tuple(W), bytes(last["blockHash"]), int(last["blockNumber"]))

    def round_messages(self, rnd: int, from_block: Optional[int] = None) -> list[tuple]:
        """(sender bytes, norm, packed q) of every message of round ``rnd``, in submission order,
        read from the contract's Submitted events."""
        logs = self.chain.events(self.contract, "Submitted",
                                 from_block=self.deploy_block if from_block is None else from_block,
                                 argument_filters={"round": rnd})
        logs = sorted(logs, key=lambda e: int(e["args"]["index"]))
        out = []
        for i, e in enumerate(logs):
            if int(e["args"]["index"]) != i:
                raise ConfigError(f"round {rnd}: Submitted events are not contiguous at index {i}")
            out.append((bytes.fromhex(e["args"]["sender"][2:]), int(e["args"]["norm"]), bytes(e["args"]["q"])))
        return out

    # -- writes ----------------------------------------------------------------------------
    def submit(self, sender: Account, rnd: int, norm: int, packed: bytes, *, fees: Optional[dict] = None):
        return self.chain.call_tx(sender, self.contract, "submit", rnd, norm, packed, hint="submit", fees=fees)

    def attempt(self) -> Optional[tuple[int, int, int]]:
        """(next chunk, claim mask, messages) of an unfinished multi-chunk aggregation, or None."""
        def read(name):
            return int(self.chain.read(self.contract, name))

        nxt = read("agg_next")
        return None if nxt == 0 else (nxt, read("agg_claim"), read("agg_n"))

    def aggregate(self, sender: Account, messages: list[tuple], selection: tuple, *,
                  start: int = 0) -> tuple[bool, int, list]:
        """Send the chunks of the round's aggregation of ``messages`` (the round's first
        len(messages)) from chunk ``start`` (past 0: continuing a running attempt);
        returns (accepted, gas used, receipts). The first chunk reveals the sender's
        commitment, sent just before it; that of a multi-chunk one carries the bond."""
        mask = fp.selection_mask(selection)
        gas, receipts = 0, []
        accepted = False
        last = self.cparams.chunks - 1
        for chunk in range(start, self.cparams.chunks):
            data = fp.aggregation_data(messages, chunk, self.cparams.chunk_words)
            bond = self.cparams.bond if chunk == 0 and self.cparams.chunks > 1 else 0
            args = [chunk, mask, data]
            if chunk == 0:
                # commit, then reveal: the reward cannot be taken by a copy of the first chunk
                commit_receipt, salt = self.commit(sender, mask)
                gas += int(commit_receipt["gasUsed"])
                receipts.append(commit_receipt)
                args.append(salt)
            r = self.chain.call_tx(sender, self.contract, "aggregate", *args, value=bond,
                                   hint="aggregate" if chunk < last else "aggregate-last")
            gas += int(r["gasUsed"])
            receipts.append(r)
            if chunk == last:
                accepted = bool(self.contract.events.Aggregated().process_receipt(r, errors=DISCARD))
        return accepted, gas, receipts

    def commitment(self, sender: str, rnd: int, mask: int, salt: bytes) -> bytes:
        """keccak256(abi_encode(round, claim, sender, salt)), as the contract computes it."""
        from eth_abi import encode

        return keccak256(encode(["uint256", "uint256", "address", "bytes32"], [rnd, mask, sender, salt]))

    def commit(self, sender: Account, mask: int) -> tuple[dict, bytes]:
        """Commit ``sender`` to aggregating the current round with ``mask``; (receipt, salt).
        The salt is an HMAC under the sender's key, the contract, the round and the claim:
        secret to anyone without the key, and the same on a rerun of a seeded run."""
        rnd = int(self.chain.read(self.contract, "current_round"))
        salt = hmac.new(bytes(sender.key.key), b"learningchain aggregation salt" + rnd.to_bytes(32, "big")
                        + mask.to_bytes(32, "big"), hashlib.sha256).digest()
        receipt = self.chain.call_tx(sender, self.contract, "commit", self.commitment(sender.address, rnd, mask, salt),
                                     hint="commit")
        return receipt, salt

    def claim_reward(self, sender: Account, rnd: int):
        return self.chain.call_tx(sender, self.contract, "claim_reward", rnd, hint="claim")

    def deposit(self, sender: Account, value: int):
        return self.chain.call_tx(sender, self.contract, "deposit", value=value, hint="deposit")

    def finish(self, sender: Account):
        return self.chain.call_tx(sender, self.contract, "finish")

    def withdraw(self, sender: Account):
        return self.chain.call_tx(sender, self.contract, "withdraw", hint="withdraw")


def replay_model(dep: Deployment, W: list, first: int, last: int) -> list:
    """The model after rounds ``first`` .. ``last - 1``, from ``W`` (the model before round
    ``first``), recomputed with the Python twin from the chain's own records: each round's
    Submitted messages and the Aggregated event (how many messages, which selection). A
    selection that is not the l-nearest of those messages is refused (ConfigError)."""
    W = list(W)
    for rnd in range(first, last):
        W = replay_round(dep, W, rnd)
    return W


def replay_round(dep: Deployment, W: list, rnd: int, *, from_block: Optional[int] = None,
                 messages: Optional[list] = None) -> list:
    """The model after round ``rnd`` from ``W`` (the model before it), recomputed with the
    Python twin from the round's Aggregated event and its Submitted ``messages`` (read from
    the chain when not given), both searched from ``from_block`` (default: the deployment)."""
    since = dep.deploy_block if from_block is None else from_block
    logs = dep.chain.events(dep.contract, "Aggregated", from_block=since, argument_filters={"round": rnd})
    if len(logs) != 1:
        raise ConfigError(f"the contract at {dep.address} has {len(logs)} Aggregated events for round {rnd}")
    n, mask = int(logs[0]["args"]["messages"]), int(logs[0]["args"]["selection"])
    messages = (dep.round_messages(rnd, from_block=since) if messages is None else messages)[:n]
    if len(messages) != n:
        raise ConfigError(f"round {rnd}: the Aggregated event covers {n} messages, the chain holds {len(messages)}")
    q = np.stack([fp.unpack_q(m[2], dep.rule.dim) for m in messages])
    selection = fp.mask_selection(mask)
    if selection != tuple(dep.rule.select(q, [fp.tie_key(rnd, m[0]) for m in messages])):
        raise ConfigError(f"round {rnd}: the selection on chain is not the l-nearest of its messages")
    return dep.rule.update(W, q, [m[1] for m in messages], selection)


class EthereumNetwork:
    """K holders and M computing nodes playing the protocol through a deployed contract."""

    def __init__(self, deployment: Deployment, holders: list, nodes: list, faucet: Account, *,
                 rng: np.random.Generator, key_rng: Optional[np.random.Generator] = None,
                 attacks: Optional[dict] = None, claim_rewards: bool = True,
                 pseudonyms: Optional[Callable[[int, int], Account]] = None, journal: Optional[Path] = None):
        self.dep = deployment
        self.chain = deployment.chain
        self.holders = holders
        self.attacks = attacks or {}
        self.nodes = nodes  # computing nodes' accounts
        self.faucet = faucet
        self.rng = rng
        self.key_rng = key_rng  # None: the pseudo-identities' keys come from the OS CSPRNG
        self.claim_rewards = claim_rewards
        # a resumable run: message i of round r is sent from pseudonyms(r, i), and the round's
        # messages are written to ``journal`` before the first is sent (see submit_round)
        self.pseudonyms = pseudonyms
        self.journal = journal
        self.byzantine_identities: set = set()  # native identities of Byzantine messages
        self.byzantine_senders: set = set()  # their Ethereum accounts
        self.pseudo_identities: list = []  # every fresh holder account, for audits
        self.rejected_aggregations = 0
        self.messages_rejected: Counter = Counter()
        self.rewards_paid: Counter = Counter()  # node index -> wei
        self.aggregations: Counter = Counter()  # node index -> accepted aggregations
        self._head = deployment.head()
        self.answered = AnswerOnce()  # rounds the holders sent messages for

    @property
    def head(self) -> EthHead:
        return self._head

    def _fund(self, account: Account, amount: int) -> None:
        self.chain.transfer(self.faucet, account.address, amount, what="faucet")

    def _aggregation_gas_cost(self) -> int:
        """The most a whole aggregation can cost in fees: one transaction per chunk and the
        claim's commitment, each at the gas limit and the fee cap (a multi-chunk MNIST
        aggregation is 55 transactions; funding one left the node without gas at chunk 2)."""
        return (self.dep.cparams.chunks + 1) * self.chain.gas_limit() * self.chain.fee_fields()["maxFeePerGas"]

    def _ensure_funds(self, account: Account, amount: int) -> None:
        have = self.chain.balance(account.address)
        if have < amount:
            self._fund(account, 4 * amount - have)

    def _round_entries(self, base: EthHead) -> tuple[list, Counter, bool]:
        """The round's messages as (norm, packed, byzantine) entries, the rejections, and
        whether they come from the journal of an earlier process (a resumed round: they are
        sent again as they were, never drawn afresh, so no holder releases a second noisy
        message for the round)."""
        if self.journal is not None and self.journal.exists():
            try:
                doc = json.loads(self.journal.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{self.journal}: unreadable ({exc})") from None
            if doc.get("round") == base.height and doc.get("address") == self.dep.address:
                entries = [(int(e["norm"]), bytes.fromhex(e["q"]), bool(e["byzantine"])) for e in doc["messages"]]
                return entries, Counter(doc.get("rejected", {})), True
        messages = collect_messages(self.holders, self.attacks, base, self.byzantine_identities)
        entries, rejected = [], Counter()
        for msg in messages:
            try:
                norm = fp.encode_norm(msg.norm)
            except InvalidMessage as exc:
                rejected[exc.reason] += 1
                continue
            entries.append((norm, fp.pack_q(msg.q), msg.identity in self.byzantine_identities))
        if self.journal is not None:
            doc = {"address": self.dep.address, "round": base.height, "rejected": dict(rejected),
                   "messages": [{"norm": n, "q": p.hex(), "byzantine": b} for n, p, b in entries]}
            write_private(self.journal, json.dumps(doc).encode())
        return entries, rejected, False

    def _sent_before(self, account: Account, rnd: int, since: int) -> bool:
        """Whether a process before this one sent ``account``'s message (resume): it is in the
        round's events, or its transaction was mined (and reverted), or is still pending."""
        w3 = self.chain.w3
        deadline = time.monotonic() + 600
        while int(w3.eth.get_transaction_count(account.address, "pending")) > \
                int(w3.eth.get_transaction_count(account.address, "latest")):
            if time.monotonic() > deadline:
                raise ConfigError(f"the message sent from {account.address} before the interruption is still "
                                  "pending after 600 s")
            time.sleep(1.0)
        if int(w3.eth.get_transaction_count(account.address, "latest")) > 0:
            return True
        logs = self.dep.contract.events.Submitted.get_logs(
            from_block=since, argument_filters={"round": rnd, "sender": account.address})
        return bool(logs)

    def submit_round(self, base: EthHead) -> tuple[list, Counter]:
        """Every holder's message for the round, each sent from a fresh funded account."""
        entries, rejected, resumed = self._round_entries(base)
        gas = []
        for i, (norm, packed, byzantine) in enumerate(entries):
            if self.pseudonyms:
                account = self.pseudonyms(base.height, i)
            else:
                # a key made here this moment has sent nothing (were it not so, the node's
                # "nonce too low" makes send ask it for the nonce)
                account = new_account(self.key_rng, "holder")
                account.nonce = 0
            self.pseudo_identities.append(account.address)
            if byzantine:
                self.byzantine_senders.add(account.address.lower())
            if resumed and self._sent_before(account, base.height, base.block_number):
                continue
            fees = self.chain.fee_fields()
            limit = self.chain.gas_for({"from": self.faucet.address, "to": self.dep.address, "value": 0,
                                        "data": self.chain.encode_call(self.dep.contract, "submit",
                                                                           [base.height, norm, packed])},
                                       "submit", "submit")
            need = limit * fees["maxFeePerGas"]
            if resumed:
                need -= min(need, self.chain.balance(account.address))  # funded before the interruption
            if need:
                self._fund(account, need)
            try:
                r = self.dep.submit(account, base.height, norm, packed, fees=fees)
            except Reverted as exc:
                rejected[exc.reason] += 1
                continue
            gas.append(int(r["gasUsed"]))
        return gas, rejected

    def _continue_attempt(self, node: Account, messages: list) -> tuple[bool, int, tuple]:
        """Finish a multi-chunk aggregation left running (anyone may, under its claim): it is
        accepted, or rejected and the round reopens. (accepted, gas, its claim). When its
        starter is one of our computing nodes (a resumed run), that node finishes it, and is
        paid; a node that finishes another's attempt is not (the contract pays only a starter
        that sent every chunk)."""
        att = self.dep.attempt()
        if att is None:
            return False, 0, ()
        nxt, claim, n = att
        owner = str(self.chain.read(self.dep.contract, "agg_owner")).lower()
        mine = next((a for a in self.nodes if a.address.lower() == owner), None)
        if mine is not None:
            node = mine
            self._ensure_funds(node, self._aggregation_gas_cost())
        try:
            accepted, gas, _ = self.dep.aggregate(node, messages[:n], fp.mask_selection(claim), start=nxt)
        except Reverted:
            return False, 0, ()  # finished or replaced meanwhile
        return accepted, gas, fp.mask_selection(claim)

    def _aggregate(self, node: Account, base: EthHead, messages: list) -> tuple[bool, tuple, int, Counter]:
        """The computing node's aggregation of the round: (accepted, selection, gas, rejections)."""
        q = np.stack([fp.unpack_q(m[2], self.dep.rule.dim) for m in messages])
        keys = [fp.tie_key(base.height, m[0]) for m in messages]
        selection = self.dep.rule.select(q, keys)
        self._ensure_funds(node, self._aggregation_gas_cost() + self.dep.cparams.bond)
        rejections: Counter = Counter()
        accepted, gas, claimed = self._continue_attempt(node, messages)
        if accepted:
            return True, claimed, gas, rejections
        try:
            ok, more, _ = self.dep.aggregate(node, messages, selection)
        except Reverted as exc:
            ok, more = False, 0
            rejections[exc.reason] += 1
        return ok, selection, gas + more, rejections

    def step(self) -> EthRound:
        start = time.perf_counter()
        base = self._head
        first_block = self.chain.block_number() + 1
        gas_submit: list = []
        if self.answered.claim(base.height):
            gas_submit, rejected = self.submit_round(base)
            for reason, n in rejected.items():
                self.messages_rejected[reason] += n
        # else: the holders' messages for this round are on chain already (its aggregation
        # failed): the computing nodes aggregate them again
        winner = int(self.rng.integers(len(self.nodes)))
        node = self.nodes[winner]
        # The computing node reads the round from the chain, as any observer would,
        # from the block that opened it.
        messages = self.dep.round_messages(base.height, from_block=base.block_number)
        rejections: Counter = Counter()
        selection: tuple = ()
        accepted = False
        gas_agg = gas_claim = 0
        cp = self.dep.cparams
        if len(messages) >= cp.min_messages:
            if len(messages) < (cp.min_messages if cp.quorum is None else cp.quorum):
                self.chain.wait_until_block(self.dep.round_opened() + cp.window)
            accepted, selection, gas_agg, rejections = self._aggregate(node, base, messages)
            if not accepted:
                self.rejected_aggregations += 1
            else:
                # the contract's record of whom it pays (a multi-chunk attempt: its starter, and
                # only if the starter sent every chunk), which may be none of our nodes
                paid = str(self.chain.read(self.dep.contract, "aggregator_of", base.height)).lower()
                payee = next((j for j, a in enumerate(self.nodes) if a.address.lower() == paid), None)
                if payee is not None:
                    winner = payee
                    self.aggregations[winner] += 1
                if payee is not None and self.claim_rewards and self.dep.cparams.reward > 0:
                    node = self.nodes[payee]
                    before = self.chain.balance(node.address)
                    r = self.dep.claim_reward(node, base.height)
                    gas_claim = int(r["gasUsed"])
                    self.rewards_paid[winner] += self.chain.balance(node.address) - before + \
                        gas_claim * int(r["effectiveGasPrice"])
        head = self.dep.head(from_block=first_block if accepted else base.block_number)
        changed = head.height != base.height
        if changed:
            # the model the node (a JSON-RPC endpoint) reports is what the holders train on
            # next: it must be the twin's update of the chain's own record of the round
            want = replay_round(self.dep, list(base.fixed), base.height, from_block=base.block_number,
                                messages=messages)
            if list(head.fixed) != want:
                wrong = next(i for i, (a, b) in enumerate(zip(head.fixed, want)) if a != b)
                raise EthereumError(f"round {base.height}: the model the chain reports differs from the update of "
                                    f"the round's messages and selection (first at coordinate {wrong}); the "
                                    f"JSON-RPC endpoint or the contract is not to be trusted")
        self._head = head
        byz = sum(1 for i in selection if "0x" + messages[i][0].hex() in self.byzantine_senders) if changed else 0
        return EthRound(base.height + 1, winner, head, changed, selection, len(messages), byz, rejections,
                        Counter(self.messages_rejected), gas_submit, gas_agg, gas_claim,
                        time.perf_counter() - start)
