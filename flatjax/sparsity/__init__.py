"""Sparsity: pruning masks as pytrees; magnitude, random and movement pruning.

The drivers with side effects (:mod:`flatjax.sparsity.imp`,
:mod:`~flatjax.sparsity.tickets`, :mod:`~flatjax.sparsity.oneshot`) are
imported from their modules.
"""

from flatjax.sparsity.masks import (BERT_SCOPE, SCOPES, apply_mask, format_report, load_mask,
                                    magnitude_mask, random_mask, save_mask, scope_mask,
                                    sparsity, sparsity_report, top_k_mask)
from flatjax.sparsity.movement import (PRUNERS, Pruner, cubic_sparsity_schedule, make_pruner,
                                       movement_pruning)
