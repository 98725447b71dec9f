"""Aggregation rules as pure consensus functions (paper Eq. 14-16, and the rules
the Byzantine-robust learning literature compares against).

Every rule takes a :class:`Batch` (the messages of one block, in canonical order:
ascending message hash) and returns an :class:`Aggregate`: which messages it
selected and the gradient estimate it derives from them. Validators recompute
both and compare them with what the block claims, so every rule must give the
same answer on every machine (DESIGN.md section 3):

* rankings use exact integers (dot products of the fixed-point unit vectors,
  computed in float64 on integer values whose partial sums stay below 2**53,
  see :mod:`learningchain.protocol.quantize`) and break ties by message hash;
* float arithmetic is elementwise IEEE (+, -, *, /, sqrt, each correctly
  rounded) in an order the code fixes: a loop over rows in a stated order, a
  pairwise tree of elementwise additions, never a reduction whose order a
  library chooses. Sorting and selecting order statistics are exact.

Message k stands for the vector ``x_k = s_k * u_k`` with ``u_k = q_k / 2**bits``.
Distances between messages come from the exact Gram matrix of the q's:
``||x_a - x_b||^2 = p_a^2 G_aa + p_b^2 G_bb - 2 p_a p_b G_ab`` with
``p_k = s_k 2**-bits``, evaluated elementwise in that fixed formula.

The gradient a rule returns is already divided by the batch size m, so the
update is ``w' = w - lr * (gradient + lam * w)`` for every rule.

Rules with an ``f`` option (the number of Byzantine messages the rule is set to
tolerate) default to ``ceil(K/2) - 1`` for K = ``params.holders``: the paper's
honest-majority assumption, the same tolerance l-nearest's default
``l = ceil(K/2)`` implies. Each rule clamps ``f`` to the largest value its own
definition allows for the number n of messages actually in the block (Krum
needs n >= 2f + 3, Bulyan n >= 4f + 3, trimmed mean n >= 2f + 1), so a small or
Sybil-inflated block never makes a rule undefined.

The package is split by what each part is: :mod:`.core` (the Batch and
Aggregate records and the rule registry), :mod:`.exact` (the exact building
blocks: Gram matrices, rankings, fixed-order sums) and :mod:`.rules` (the
registered rules and their options), :mod:`.robust` (the geometric median and
minimum-diameter averaging), :mod:`.pre` (the pre-aggregations every rule
accepts: NNM, bucketing, ARC) and :mod:`.vectors` (the float-vector batches
a pre-aggregation hands on, with their fixed-order distances).
"""

from .core import (
    PRE_AGGREGATIONS,
    PRE_OPTIONS,
    RULES,
    Aggregate,
    Batch,
    RuleSpec,
    check_rule,
    default_f,
    get_rule,
    parse_pre,
    register_rule,
)
from .exact import (
    compute_cosine_ranking,
    compute_gram,
    compute_krum_scores,
    compute_l_nearest,
    compute_squared_distances,
    compute_sum_vector,
    coordinate_columns,
    coordinate_values,
    fixed_order_row_sums,
    weighted_unit_sum,
)
from .rules import (
    CENTERED_CLIPPING_TAU,
    aggregate_bulyan,
    aggregate_centered_clipping,
    aggregate_krum,
    aggregate_l_nearest,
    aggregate_l_nearest_bounded,
    aggregate_mean,
    aggregate_median,
    aggregate_multi_krum,
    aggregate_trimmed_mean,
    compute_bulyan_selection,
    default_l,
    norm_bound,
)
from .robust import aggregate_geometric_median, aggregate_mda, mda_subsets
from .pre import aggregate, aggregate_with_pre, arc, bucket_permutation, bucketing, nnm, pre_aggregate
from .vectors import VectorBatch, vector_batch

__all__ = [
    "Batch",
    "Aggregate",
    "RuleSpec",
    "RULES",
    "register_rule",
    "get_rule",
    "check_rule",
    "aggregate",
    "compute_sum_vector",
    "compute_cosine_ranking",
    "compute_l_nearest",
    "compute_gram",
    "compute_squared_distances",
    "compute_krum_scores",
    "compute_bulyan_selection",
    "weighted_unit_sum",
    "coordinate_values",
    "coordinate_columns",
    "fixed_order_row_sums",
    "norm_bound",
    "default_f",
    "default_l",
    "CENTERED_CLIPPING_TAU",
    "aggregate_l_nearest",
    "aggregate_l_nearest_bounded",
    "aggregate_mean",
    "aggregate_median",
    "aggregate_trimmed_mean",
    "aggregate_krum",
    "aggregate_multi_krum",
    "aggregate_bulyan",
    "aggregate_centered_clipping",
    "aggregate_geometric_median",
    "aggregate_mda",
    "mda_subsets",
    "PRE_AGGREGATIONS",
    "PRE_OPTIONS",
    "parse_pre",
    "aggregate_with_pre",
    "pre_aggregate",
    "nnm",
    "bucketing",
    "bucket_permutation",
    "arc",
    "VectorBatch",
    "vector_batch",
]
