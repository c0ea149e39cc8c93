"""The soak: minutes of mixed traffic against the service, watching its memory and descriptors."""
