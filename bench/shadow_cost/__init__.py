"""Shadow scoring's cost: /score images/s of one service process with and without a shadow
version scoring the same images."""
