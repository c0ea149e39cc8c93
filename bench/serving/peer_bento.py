"""The peer of bench/serving: BentoML's adaptive batching over the same ONNX model.

One batchable API, `POST /score` with multipart `files` parts: BentoML's dispatcher merges
the uploads of concurrent requests into one call of at most PEER_MAX_BATCH images, which
decodes them with this repository's own decoders (libspng fast path, else Pillow under the
model's decode policy) and runs ONNX Runtime once. Runs from bench/serving/.peer-venv
(BentoML's dependencies are its own):
`PEER_MODEL=... PYTHONPATH=<repo> bentoml serve peer_bento:Scorer --port N` in bench/serving/.
"""

import os
from pathlib import Path

import bentoml
import numpy as np
import onnxruntime as ort

from modelfile.layout import open_model
from modelfile.pixels import to_input
from service.decoding import decode_pixels, fast_png

MODEL = os.environ.get("PEER_MODEL", "")
WORKERS = int(os.environ.get("PEER_WORKERS", "1"))
THREADS = int(os.environ.get("PEER_THREADS", "1"))
MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH", "64"))
# BentoML's default is 60 s; its dispatcher sheds a request it expects to wait longer.
MAX_LATENCY_MS = int(os.environ.get("PEER_MAX_LATENCY_MS", "1000"))
MAX_PIXELS = 40_000_000


@bentoml.service(workers=WORKERS, traffic={"timeout": 30})
class Scorer:
    """A Deep SVDD model behind BentoML: scores, one per uploaded image."""

    def __init__(self) -> None:
        if not MODEL:
            raise RuntimeError("set PEER_MODEL to the model.onnx file to serve")
        _, meta = open_model(Path(MODEL))
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        self.session = ort.InferenceSession(MODEL, options, providers=["CPUExecutionProvider"])
        self.spec = meta.input
        self.policy = meta.decode

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def score(self, files: list[Path]) -> list[float]:
        """Scores the images of every request in this batch in one ONNX Runtime run."""
        pixels = []
        for path in files:
            data = path.read_bytes()
            fast = fast_png(data, self.spec, MAX_PIXELS)
            pixels.append(
                fast
                if fast is not None
                else decode_pixels(data, path.name, self.spec, MAX_PIXELS, self.policy)
            )
        (scores,) = self.session.run(["score"], {"image": to_input(pixels)})
        return np.asarray(scores, dtype=np.float64).tolist()
