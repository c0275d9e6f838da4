"""Sparsity: masks as pytrees."""

from flatjax.sparsity.masks import apply_mask
