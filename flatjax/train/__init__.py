"""Training: the train state, losses, jitted steps, evaluation, and the one training loop
(:class:`flatjax.train.trainer.Trainer`) every driver runs."""
