"""Optimizers: SAM and its variants as optax transforms, SWA, and the registry."""

from flatjax.optim.accumulate import microbatched, weighted_rows
from flatjax.optim.grad_fn import GradFn
from flatjax.optim.gsam import gsam, rho_schedule_from_lr
from flatjax.optim.looksam import looksam
from flatjax.optim.msam import msam, unperturbed
from flatjax.optim.registry import (OptimizerConfig, lr_schedule, make_optimizer, names,
                                    register)
from flatjax.optim.sam import sam, sam_perturbation
from flatjax.optim.swa import SWA_RECIPES, SWAConfig, averaged_params, parse_swa, swa
