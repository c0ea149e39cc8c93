"""The soak: the service under mixed traffic for hours, its memory and descriptors."""
