"""Byzantine behaviour: holders that send forged gradients and miners that write
wrong blocks. Each attack is a small callable with its settings in ``__init__``;
a registry maps names to them and refuses an unknown name with the known ones."""

from .holders import HOLDER_ATTACKS, AttackContext, HolderAttack, make_holder_attack

__all__ = ["HOLDER_ATTACKS", "AttackContext", "HolderAttack", "make_holder_attack"]
