"""flatjax: Train Flat, Then Compress (Na, Mehta, Strubell 2022) in JAX."""

__version__ = "0.1.0"

from flatjax.optim import gsam, looksam, msam, sam, swa  # noqa: E402  the optax transforms
