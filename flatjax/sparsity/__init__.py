"""Sparsity: pruning masks as pytrees, magnitude / random / movement pruning."""

from flatjax.sparsity.masks import (BERT_SCOPE, SCOPES, apply_mask, load_mask, magnitude_mask,
                                    random_mask, save_mask, scope_mask, sparsity,
                                    sparsity_report, top_k_mask)
