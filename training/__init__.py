"""Training side: data, preprocessing, networks, objectives, trainer, export, CLI."""
