"""Sparsity: pruning masks as pytrees; magnitude, random and movement pruning.

The drivers that train or write files with these (IMP, tickets, one-shot
curves, CoFi) are in :mod:`flatjax.recipes`.
"""

from flatjax.sparsity.masks import (BERT_SCOPE, SCOPES, apply_mask, format_report, load_mask,
                                    magnitude_mask, random_mask, save_mask, scope_mask,
                                    sparsity, sparsity_report, top_k_mask)
from flatjax.sparsity.movement import (PRUNERS, Pruner, cubic_sparsity_schedule, make_pruner,
                                       movement_pruning)
