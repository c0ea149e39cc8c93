"""HTTP service: scores images with Deep SVDD ONNX models. Never imports torch."""
