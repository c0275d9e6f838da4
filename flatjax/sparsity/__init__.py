"""Sparsity: pruning masks as pytrees; one pruning interface (a scoring rule plus a
schedule, :mod:`flatjax.sparsity.pruner`) and its methods by name
(:mod:`flatjax.sparsity.methods`: magnitude, movement, random); CoFi's
hard-concrete gates and the export of a gated model.

The drivers that train or write files with these (IMP, tickets, one-shot
curves, CoFi) are in :mod:`flatjax.recipes`.
"""

from flatjax.sparsity.keep_pruned import KeepPrunedState, keep_pruned
from flatjax.sparsity.masks import (BERT_SCOPE, SCOPES, FullyPrunedWarning, apply_mask,
                                    boolean_tree, format_report, in_scope, load_mask,
                                    magnitude_mask, random_mask, save_mask, scope_mask,
                                    scoped_mask, sparsity, sparsity_report, top_k_mask)
from flatjax.sparsity.methods import (SCORINGS, get_scoring, make_pruner, movement_pruning,
                                      register)
from flatjax.sparsity.pruner import (Pruner, Scoring, cubic_sparsity_schedule, prune_once,
                                     scheduled)
