"""Data holders: local gradient -> signed message (paper Eq. 6, 9-13).

In round t a holder reads w_t from the head block, computes the gradient of its
summed loss on its data (all of it, or a mini-batch of m examples), clips it at G
per example (or as a whole, the literal Eq. 9), adds the chain's noise
(Eq. 10), normalises it (Eq. 11-12), quantises the unit vector and signs the
message under its pseudo-identity (Eq. 13).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import numpy as np
import torch

from .crypto import PrivateKey
from .errors import ConfigError, InvalidMessage
from .models import build_model, loss_fn, set_flat
from .privacy import GaussianMechanism, L2LaplaceMechanism, NoNoise, clipped_gradient_sum, epsilon_for_round
from .privacy.accounting import gaussian_sigma
from .privacy.clipping import _CLIPPERS, PerExampleClipper
from .protocol.block import Block
from .protocol.budget import exact_decimal, message_cost
from .protocol.message import Message, sign_message
from .protocol.params import ProtocolParams
from .protocol.quantize import unit_limit, unit_norm_bounds

__all__ = ["DataHolder", "mechanism_for_round", "encode_vector", "HolderReport", "make_messages",
           "holders_within_budget"]

log = logging.getLogger(__name__)


def mechanism_for_round(params: ProtocolParams, t: int):
    """The noise mechanism a holder applies in round t (1-based)."""
    if params.mechanism == "none":
        return NoNoise()
    eps_t = epsilon_for_round(params.schedule, params.epsilon, t, params.rounds)
    sensitivity = 2.0 * params.clip  # Appendix A
    if params.mechanism == "l2-laplace":
        return L2LaplaceMechanism(epsilon=eps_t, sensitivity=sensitivity)
    if params.noise_multiplier > 0:
        # sigma = z * 2G, the same in every round; the RDP accountant turns it into (eps, delta)
        return GaussianMechanism(sigma=params.noise_multiplier * sensitivity)
    return GaussianMechanism(sigma=gaussian_sigma(epsilon=eps_t, delta=params.delta, sensitivity=sensitivity))


def encode_vector(vector: np.ndarray, params: ProtocolParams) -> tuple[float, np.ndarray]:
    """(norm s, fixed-point unit vector q) of a gradient, Eq. 11-12."""
    vector = np.asarray(vector, dtype=np.float64)
    if vector.shape != (params.dim,):
        raise ConfigError(f"gradient has shape {vector.shape}, the model has {params.dim} parameters")
    if not np.all(np.isfinite(vector)):
        raise InvalidMessage("bad-norm", "gradient contains NaN or infinity")
    norm = float(np.sqrt(np.dot(vector, vector)))
    if not norm > 0 or not np.isfinite(norm):
        raise InvalidMessage("bad-norm", f"gradient norm {norm} cannot be normalised")
    # the unit bound checked there fits the chain's entry width (ProtocolParams checks it)
    dtype = np.int16 if params.message_bits == 16 else np.int32
    return norm, _quantize_scaled(vector, norm, params.quant_bits, params.norm_tol_bits, dtype)


def _quantize_scaled(vector: np.ndarray, norm: float, bits: int, tol_bits: int, dtype=np.int32) -> np.ndarray:
    """``quantize_unit(vector / norm, bits)``, checked as ``check_unit`` checks it, in one
    scaled copy instead of three and without the integer copies of the check.

    Dividing by ``norm * 2**-bits`` gives exactly ``(vector / norm) * 2**bits``: a
    power-of-two scaling commutes with rounding while nothing leaves the normal range.
    It cannot: ``norm``, the root of a positive double, is at least 2**-537, so
    ``norm * 2**-bits`` (bits <= 26) is normal, and |vector / norm| <= 1 keeps each
    quotient within about 2**bits (one that is subnormal rounds to 0 either way).

    The check is ``check_unit``'s on the rounded floats, which are the integers of q:
    each component is within ``check_unit``'s bound (2**bits (1 + 2**-tol_bits)) by
    the same |vector / norm| <= 1, and ``||q||^2`` is their float64 dot product, exact
    in any summation order where it matters: the terms are integers of at most 2**53
    in total within the bounds, and a sum beyond them stays beyond them."""
    scaled = vector / (norm / float(2**bits))
    np.rint(scaled, out=scaled)
    limit = unit_limit(bits, tol_bits)
    if scaled.size and max(float(scaled.max()), -float(scaled.min())) > limit:  # pragma: no cover (see above)
        raise InvalidMessage("not-unit", f"a component exceeds the unit bound 2^{bits}")
    lo, hi = unit_norm_bounds(bits, tol_bits)
    n2 = float(np.dot(scaled, scaled))
    if not lo <= n2 <= hi:
        raise InvalidMessage("not-unit", f"quantised vector has norm {n2 ** 0.5 / 2**bits:.6g}, "
                                         f"outside 1 +/- 2^-{tol_bits}")
    return scaled.astype(dtype)


@dataclass(frozen=True)
class HolderReport:
    message: Message
    honest_gradient: Optional[np.ndarray]  # the clipped, noised gradient before normalising
    clipped: int
    examples: int


class DataHolder:
    """One party P_k with private data D_k.

    ``fresh_identity`` draws a new pseudo-identity (key pair) every round, as the
    paper suggests to unlink a holder's messages; otherwise one key is used for
    the whole run.
    """

    def __init__(self, index: int, x: np.ndarray, y: np.ndarray, params: ProtocolParams, *,
                 rng: np.random.Generator, fresh_identity: bool = False, dtype=torch.float32,
                 sampling: str = "fixed"):
        if len(x) == 0:
            raise ConfigError(f"holder {index} has no data")
        self.index = index
        self.params = params
        self.spec = params.model
        self.rng = rng
        self.fresh_identity = fresh_identity
        if sampling not in ("fixed", "poisson"):
            raise ConfigError(f"unknown sampling {sampling!r}; known: fixed, poisson")
        self.sampling = sampling
        self.x = torch.as_tensor(np.asarray(x), dtype=dtype)
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.model = build_model(self.spec, dtype=dtype)
        self.loss = loss_fn(self.spec)
        self.key = PrivateKey.generate(rng)
        self.identities = [self.key.address]
        # what this holder has released (every message it made, on the chain or not),
        # in the exact units of the chain's budget rule
        self.sent = 0
        self.spent = Fraction(0)
        self.stopped: Optional[str] = None  # why it stopped sending, once it has

    def budget_allows(self, base: Block, *, chain_spent: Fraction = Fraction(0)) -> bool:
        """May this holder release a message on ``base`` within the chain's budget?

        Its own count of released messages is the one that binds: a message that
        never reaches a block has still been seen. ``chain_spent`` (the spend of
        its identity on the chain, which a restarted holder may not have counted)
        is a floor. Says why once, when it first refuses.
        """
        budget = self.params.budget
        if budget is None:
            return True
        spent = max(self.spent, chain_spent)
        after = spent + message_cost(self.params, base.height)
        if after <= exact_decimal(budget):
            return True
        if self.stopped is None:
            self.stopped = (f"holder {self.index} stops sending: its message for round {base.height} would spend "
                            f"epsilon {float(after):.6g}, over its budget of {budget:g} (spent {float(spent):.6g} "
                            f"in {self.sent} messages)")
            log.warning("%s", self.stopped)
        return False

    # -- checkpoints (a resumed run continues exactly where it stopped) -------------
    def checkpoint_state(self) -> dict:
        """What this holder carries from round to round, as JSON: its generator's state
        (None for an OS generator, whose draws cannot be replayed), its current key, and
        what it has released."""
        bitgen = getattr(self.rng, "bit_generator", None)
        return {"rng": bitgen.state if bitgen is not None else None, "key": self.key.secret.hex(),
                "sent": self.sent, "spent": str(self.spent), "stopped": self.stopped}

    def restore_state(self, state: dict) -> None:
        """Continue from :meth:`checkpoint_state`; raises ValueError on a malformed state."""
        if state["rng"] is not None and getattr(self.rng, "bit_generator", None) is not None:
            self.rng.bit_generator.state = state["rng"]
        self.key = PrivateKey(bytes.fromhex(state["key"]))
        self.identities = [self.key.address]
        self.sent, self.spent, self.stopped = int(state["sent"]), Fraction(state["spent"]), state["stopped"]

    @property
    def examples(self) -> int:
        return int(self.x.shape[0])

    def next_key(self) -> PrivateKey:
        if self.fresh_identity:
            self.key = PrivateKey.generate(self.rng)
            self.identities.append(self.key.address)
        return self.key

    @property
    def sampling_rate(self) -> float:
        """q = m / N_k: the chance an example is in a round's batch (1: all data)."""
        return min(1.0, self.params.batch_size / self.examples)

    def batch_indices(self) -> Optional[np.ndarray]:
        """The examples of this round's batch; None for all of them. ``fixed``: m
        of N_k uniformly without replacement; ``poisson``: each example
        independently with probability q = m / N_k (its size varies, m on
        average; the chain still divides by m)."""
        m = self.params.batch_size
        if m >= self.examples:
            return None
        if self.sampling == "poisson":
            return np.flatnonzero(self.rng.random(self.examples) < m / self.examples)
        return self.rng.choice(self.examples, size=m, replace=False)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.batch_indices()
        if idx is None:
            return self.x, self.y
        idx = torch.as_tensor(idx, dtype=torch.long)
        return self.x[idx], self.y[idx]

    def local_gradient(self, base: Block) -> tuple[np.ndarray, int, int]:
        """Eq. 6 + 9: clipped summed gradient at the base block's model."""
        set_flat(self.model, base.model)
        x, y = self.batch()
        grad, stats = clipped_gradient_sum(self.model, self.loss, x, y, clip=self.params.clip,
                                           mode=self.params.clip_mode)
        return grad, stats.clipped, stats.examples

    def privatize(self, grad: np.ndarray, base: Block) -> np.ndarray:
        """Eq. 10 with the round's budget."""
        mech = mechanism_for_round(self.params, base.height + 1)
        noise = mech.sample(self.params.dim, self.rng)  # a fresh float64 array: summed into in place
        return np.add(grad, noise, out=noise)

    def sign(self, vector: np.ndarray, base: Block, key: Optional[PrivateKey] = None) -> Message:
        norm, q = encode_vector(vector, self.params)
        return sign_message(key or self.next_key(), round=base.height, base=base.hash, norm=norm, q=q)

    def finish(self, grad: np.ndarray, base: Block, clipped: int, examples: int) -> HolderReport:
        """Eq. 10-13 on a clipped gradient: noise, normalise, quantise, sign."""
        noisy = self.privatize(grad, base)
        report = HolderReport(self.sign(noisy, base), noisy, clipped, examples)
        self.sent += 1
        self.spent += message_cost(self.params, base.height)
        return report

    def make_message(self, base: Block) -> HolderReport:
        grad, clipped, examples = self.local_gradient(base)
        return self.finish(grad, base, clipped, examples)

    def abstain_or_message(self, base: Block) -> Optional[HolderReport]:
        """:meth:`make_message`, or None where :meth:`finish_or_abstain` abstains."""
        grad, clipped, examples = self.local_gradient(base)
        return self.finish_or_abstain(grad, base, clipped, examples)

    def finish_or_abstain(self, grad: np.ndarray, base: Block, clipped: int, examples: int) -> Optional[HolderReport]:
        """:meth:`finish`, or None when the gradient has no direction to send.

        A gradient of norm 0 (a saturated model without privacy noise) or one that is
        not finite cannot be normalised (Eq. 11): the holder abstains from the round,
        sends nothing and spends nothing, instead of ending everyone's run.
        """
        try:
            return self.finish(grad, base, clipped, examples)
        except InvalidMessage as exc:
            if exc.reason != "bad-norm":
                raise
            return None


def holders_within_budget(holders: list, base: Block, chain_spend=None) -> list:
    """The holders that may release a message on ``base`` under the chain's budget
    (all of them when it has none); ``chain_spend``: identity -> (messages, epsilon)."""
    out = []
    for h in holders:
        floor = Fraction(0)
        if chain_spend:
            floor = chain_spend.get(bytes(h.key.address), (0, Fraction(0)))[1]
        if h.budget_allows(base, chain_spent=floor):
            out.append(h)
    return out


def clipped_gradients(holders: list, base: Block):
    """Each holder's clipped gradient sum at ``base``'s model, one at a time as ``(grad,
    stats)`` ((d,) float64 and :class:`ClipStats`), out of one forward and one backward
    pass over the holders' concatenated batches (holders of one model and clip mode)."""
    lead = holders[0]
    set_flat(lead.model, base.model)
    xs, ys, spans, start = [], [], [], 0
    for h in holders:
        x, y = h.batch()
        xs.append(x)
        ys.append(y)
        spans.append((start, start + int(x.shape[0])))
        start += int(x.shape[0])
    clipper = _CLIPPERS.get(lead.model)
    if clipper is None:
        clipper = _CLIPPERS[lead.model] = PerExampleClipper(lead.model)
    clip = float("inf") if lead.params.clip_mode == "none" else lead.params.clip
    return clipper.iter_segments(lead.loss, torch.cat(xs), torch.cat(ys), spans, clip=clip)


def make_messages(holders: list, base: Block, *, keep_gradients: bool = True) -> list:
    """Every holder's message for one round (None for a holder that abstains, see
    :meth:`DataHolder.finish_or_abstain`), the gradients computed together.
    ``keep_gradients=False`` leaves the reports' ``honest_gradient`` out (None): K
    noised gradients of d floats that only an omniscient attack reads.

    All holders compute at the same model w_t, so their per-example clipped sums
    come out of one forward and one backward pass over their concatenated
    batches (a simulation speed-up: the numbers are those each holder would get
    alone, up to float rounding, and noise, normalisation and signing stay per
    holder). Falls back to one holder at a time where batching does not apply.
    """
    if len(holders) <= 1 or any(h.params.clip_mode == "total" for h in holders):
        made = [h.abstain_or_message(base) for h in holders]
        if keep_gradients:
            return made
        return [None if r is None else dataclasses.replace(r, honest_gradient=None) for r in made]
    rows = clipped_gradients(holders, base)
    out = []
    for h, (grad, stats) in zip(holders, rows):  # one gradient alive at a time (d floats each)
        report = h.finish_or_abstain(grad, base, stats.clipped, stats.examples)
        if report is not None and not keep_gradients:
            report = dataclasses.replace(report, honest_gradient=None)
        out.append(report)
    return out
