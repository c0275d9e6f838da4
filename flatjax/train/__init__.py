"""Training: the train state, losses, jitted steps and the fit driver."""
