"""Library code of the test suites: tiny models and repositories, images, live servers and
processes, metric lookups, raw HTTP (the parts the experiments share live in bench/harness)."""
