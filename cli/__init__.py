"""The `deepsvdd` command line: one entry point dispatching to training and to the service."""
