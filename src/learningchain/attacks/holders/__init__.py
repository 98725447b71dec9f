"""Byzantine data holders (paper Section III-B and VI-B).

A Byzantine holder may send anything it can sign. Its attack returns the raw
gradient vectors it wants to send this round (one message each, the first
under its own pseudo-identity, any further ones under fresh identities); the
holder then normalises, quantises and signs them like an honest one, because a
message that breaks the format would simply be refused.

The attacks live in submodules by family (``classic``: the paper's attacker and
the first robust-learning attacks; ``crafted``: Inf, Mimic, Min-Max, Min-Sum;
``fang``: Fang et al.'s attacks on trimmed mean and Krum; ``lnearest``: an
attack written against l-nearest itself; ``backdoor``: model replacement with a
pixel trigger); importing this package registers them all.
"""

from .base import HOLDER_ATTACKS, AttackContext, HolderAttack, check_positive, honest_matrix, make_holder_attack, \
    register_attack
from .classic import (ALIEAttack, GaussianAttack, IPMAttack, LabelFlipAttack, NormInflationAttack, OppositeAttack,
                      SignFlipAttack, SybilAttack, alie_z, flipped_labels)
from .crafted import InfAttack, MimicAttack, MinMaxAttack, MinSumAttack, perturbation
from .fang import FangKrumAttack, FangTrimmedMeanAttack
from .lnearest import LNearestMarginAttack
from .backdoor import BackdoorAttack, stamp_trigger

__all__ = ["AttackContext", "HolderAttack", "HOLDER_ATTACKS", "register_attack", "make_holder_attack",
           "honest_matrix", "check_positive",
           "GaussianAttack", "SignFlipAttack", "OppositeAttack", "ALIEAttack", "IPMAttack", "LabelFlipAttack",
           "NormInflationAttack", "SybilAttack", "alie_z", "flipped_labels",
           "InfAttack", "MimicAttack", "MinMaxAttack", "MinSumAttack", "perturbation",
           "FangKrumAttack", "FangTrimmedMeanAttack", "LNearestMarginAttack", "BackdoorAttack", "stamp_trigger"]
