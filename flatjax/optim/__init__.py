"""Optimizers: the registry and (later) SAM and its variants as optax transforms."""

from flatjax.optim.registry import (OptimizerConfig, linear_schedule, make_optimizer, names,
                                    register)
