"""Self-supervised Deep SVDD variants beyond the paper, and their serving cost."""
