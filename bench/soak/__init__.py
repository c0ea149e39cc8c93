"""The soak: mixed traffic through haproxy to two replicas under rolling restarts and reloads."""
