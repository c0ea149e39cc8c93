"""The model-file contract that training writes and serving reads, importable without torch.

Names of the file and of the graph's tensors live here, beside the metadata schema
(`modelfile.metadata`) and the pixel pipeline (`modelfile.imaging`, `modelfile.pixels`).
"""

MODEL_FILE = "model.onnx"
TRITON_CONFIG = "config.pbtxt"
INPUT_NAME = "image"
SCORE_OUTPUT = "score"
EMBEDDING_OUTPUT = "embedding"
OUTPUT_NAMES = (SCORE_OUTPUT, EMBEDDING_OUTPUT)
# Patch models: per-patch scores on a grid, `[N, h, w]`, row-major, higher = more anomalous.
ANOMALY_MAP_OUTPUT = "anomaly_map"
