"""What the experiments share: machine information, results files, and live services with
the processes, traffic and metrics around them."""
