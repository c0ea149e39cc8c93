"""Training at scale: `deepsvdd train` with 1 and 2 torchrun processes."""
