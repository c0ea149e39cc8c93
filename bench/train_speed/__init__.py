"""Training speed: our training loop against a per-sample DataLoader."""
