"""Deep SAD: a few labelled anomalies added to the training, scored in ONNX Runtime."""
