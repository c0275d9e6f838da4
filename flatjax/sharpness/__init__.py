"""Flatness of a loss at given params: Keskar et al.'s epsilon-sharpness, the
Hessian's top eigenvalue and trace, and loss surfaces along filter-normalised
random directions.

Every measurement takes a pure scalar ``loss_fn(params)`` (in practice the
mean task loss over fixed, seeded evaluation batches with dropout off: build
it with :func:`batch_loss_mean`) and a params pytree, and is seeded
explicitly. Only the plotting functions write files.

Keskar's maximisation needs scipy (imported when it runs).
"""

from flatjax.sharpness.hessian import (BatchMeanLoss, PowerIterationResult, TraceResult,
                                       batch_loss_mean, hutchinson_trace, hvp, make_hvp,
                                       top_hessian_eigenvalue, tree_dot, tree_norm,
                                       value_and_grad_fn, value_fn)
from flatjax.sharpness.keskar import (KeskarConfig, KeskarResult, keskar_sharpness,
                                      sharpness_value, subspace_matrix)
from flatjax.sharpness.surface import (Surface1D, Surface2D, default_filter_axis,
                                       filter_normalized_direction, grid, loss_surface_1d,
                                       loss_surface_2d, plot_surface_1d, plot_surface_2d)
