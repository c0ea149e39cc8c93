"""Serving speed: raw ONNX Runtime, the service, plain FastAPI and BentoML under wrk."""
