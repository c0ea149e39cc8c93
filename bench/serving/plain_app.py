"""The naive baseline of bench/serving: a scoring endpoint as a user would first write it.

One `async def` handler that reads every upload, decodes it with PIL, and runs ONNX Runtime
on the request's images, all on the event loop. Serve it with
`PLAIN_APP_MODEL=models/<name>/<version>/model.onnx uvicorn --app-dir bench plain_app:app`.
"""

import io
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, UploadFile
from PIL import Image

MODEL_ENV = "PLAIN_APP_MODEL"

if MODEL_ENV not in os.environ:
    raise RuntimeError(f"set {MODEL_ENV} to the model.onnx file to serve")
session = ort.InferenceSession(os.environ[MODEL_ENV], providers=["CPUExecutionProvider"])
_, channels, height, width = session.get_inputs()[0].shape
mode = "L" if channels == 1 else "RGB"

app = FastAPI()


@app.post("/score")
async def score(files: list[UploadFile]) -> dict[str, list[float]]:
    """Scores the uploaded images in one ONNX Runtime run."""
    batch = []
    for upload in files:
        image = Image.open(io.BytesIO(await upload.read())).convert(mode).resize((width, height))
        pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels) / 255.0
        batch.append(pixels.transpose(2, 0, 1))
    (scores,) = session.run(["score"], {"image": np.stack(batch)})
    return {"scores": [float(s) for s in scores]}
