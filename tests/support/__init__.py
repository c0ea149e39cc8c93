"""Library code shared by the test suites and bench/soak.py: tiny models and repositories,
images, live servers and processes, metric lookups, raw HTTP and mixed traffic."""
