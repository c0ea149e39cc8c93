"""Scaling out: throughput and p99 through HAProxy with 1 and 2 replicas."""
