#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU, run from anywhere:
#   bash bench/gpu_check.sh
# Installs the serving package (no torch) in a fresh venv with onnxruntime-gpu and its CUDA and
# cuDNN wheels, starts `deepsvdd serve` with the CUDA provider (TensorRT first where its
# libraries are present), asserts the active provider from /models, then measures images/s
# through the service (Open Inference Protocol, binary tensors, so no image decoding) against
# raw ONNX Runtime CUDA on the same model file, at batch 1, 64 and 256. Then, in a second venv
# with the `train` and `experiments` extras (PyTorch with CUDA, scikit-image's photographs):
# training speed on CUDA in fp32 and bf16, standard and channels-last layout, for the paper's
# networks and the patch model's step (bench/train_speed/precision.py); a patch model trained
# on CUDA (`deepsvdd train --model patch`, fp32: its loop has no bf16) on crops of a photograph;
# and 1024x1024 JPEG photographs decoded on CPU threads feeding that model's inference on the
# CUDA provider, which must be the one running it (bench/harness/cuda_feed.py).
#
# Environment: OUT (results folder; default bench/out/gpu), PORT (default 18000),
# MODEL (default fashion-mnist-bag), SECONDS_PER_POINT (default 5), PIP_ARGS (extra pip
# arguments, e.g. "--no-index --find-links /wheels" offline). The whole run is bounded:
# each phase has its own timeout; the serving part about 8 minutes at most, the training part
# about 5 minutes after its install. Any failure stops the script with a non-zero status.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=${OUT:-$ROOT/bench/out/gpu}
PORT=${PORT:-18000}
MODEL=${MODEL:-fashion-mnist-bag}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-5}
read -r -a PIP_EXTRA <<<"${PIP_ARGS:-}"
WORK=$(mktemp -d)
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "gpu_check: $*" >&2
    exit 1
}

mkdir -p "$OUT_DIR"
command -v nvidia-smi >/dev/null || fail "no nvidia-smi: this script is for a machine with an NVIDIA GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT_DIR/gpu.txt"

echo "== installing the serving package in $WORK/venv"
python3 -m venv "$WORK/venv"
PY=$WORK/venv/bin/python
timeout 300 "$PY" -m pip install -q "${PIP_EXTRA[@]}" "$ROOT" "onnxruntime-gpu[cuda,cudnn]"
"$PY" -m pip show torch >/dev/null 2>&1 && fail "torch was installed: the serving install must not need it"

# ONNX Runtime finds the CUDA and cuDNN libraries of the nvidia-* wheels on the library path.
NVIDIA_LIBS=$("$PY" - <<'EOF'
import pathlib, site
roots = [pathlib.Path(p) / "nvidia" for p in site.getsitepackages()]
print(":".join(sorted(str(d) for r in roots if r.is_dir() for d in r.glob("*/lib"))))
EOF
)
export LD_LIBRARY_PATH="${NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
if ldconfig -p 2>/dev/null | grep -q 'libnvinfer\.so'; then
    PROVIDERS=TensorrtExecutionProvider,$PROVIDERS
fi
echo "== providers wanted: $PROVIDERS"

echo "== starting the service on 127.0.0.1:$PORT"
DEEPSVDD_MODELS_DIR=$ROOT/models DEEPSVDD_PORT=$PORT DEEPSVDD_HOST=127.0.0.1 \
    DEEPSVDD_PROVIDERS=$PROVIDERS DEEPSVDD_MAX_BATCH=256 DEEPSVDD_MAX_IMAGES=256 \
    DEEPSVDD_MAX_QUEUE=4096 DEEPSVDD_DRAIN_S=0 DEEPSVDD_LOG_LEVEL=warning \
    "$WORK/venv/bin/deepsvdd" serve >"$OUT_DIR/service.log" 2>&1 &
SERVER_PID=$!

# Ready once every model is loaded and warmed up (a TensorRT engine build takes minutes).
timeout 300 "$PY" - "$PORT" <<'EOF' || fail "the service never became ready; see service.log"
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/v2/health/ready"
while True:
    try:
        with urllib.request.urlopen(url, timeout=5):
            break
    except OSError:
        time.sleep(1)
EOF

echo "== measuring"
timeout 240 "$PY" - "$PORT" "$ROOT/models" "$MODEL" "$SECONDS_PER_POINT" "$OUT_DIR" "$PROVIDERS" <<'EOF'
"""Asserts the active provider, then images/s: raw ONNX Runtime vs the service."""
import http.client, json, pathlib, sys, threading, time
import numpy as np
import onnxruntime as ort

port, models, model, seconds, out, wanted = sys.argv[1:7]
port, seconds, out = int(port), float(seconds), pathlib.Path(out)
BATCHES = (1, 64, 256)
CLIENTS = 4

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
conn.request("GET", f"/models/{model}")
info = json.loads(conn.getresponse().read())
active = info["versions"][-1]["providers"][0]
print(f"active provider of {model}: {active}")
if active == "CPUExecutionProvider":
    sys.exit(f"the service runs {model} on the CPU although {wanted} was asked for")

version = info["latest_version"]
path = pathlib.Path(models) / model / str(version) / "model.onnx"
session = ort.InferenceSession(str(path), providers=wanted.split(","))
shape = session.get_inputs()[0].shape[1:]
rng = np.random.default_rng(0)


def raw(batch):
    x = rng.random((batch, *shape), dtype=np.float32)
    for _ in range(5):
        session.run(["score"], {"image": x})
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(["score"], {"image": x})
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def served(batch):
    x = rng.random((batch, *shape), dtype=np.float32)
    header = json.dumps({
        "inputs": [{"name": "image", "shape": [batch, *shape], "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": "score", "parameters": {"binary_data": True}}],
    }).encode()
    body = header + x.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(header)),
               "Content-Type": "application/octet-stream"}
    latencies, stop, errors = [], threading.Event(), []

    def client():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            began = time.perf_counter()
            c.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
            response = c.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
            latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # warm-up, not counted
    done, start = len(latencies), time.perf_counter()
    time.sleep(seconds)
    counted = latencies[done:]
    elapsed = time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"batch {batch}: {len(errors)} requests failed, statuses {sorted(set(errors))}")
    return len(counted) * batch / elapsed, float(np.percentile(counted, 99) * 1000)


rows = []
for batch in BATCHES:
    raw_rate = raw(batch)
    rate, p99 = served(batch)
    rows.append({"batch": batch, "raw_images_per_s": raw_rate, "service_images_per_s": rate,
                 "service_p99_ms": p99, "clients": CLIENTS})
    print(f"batch {batch:>3}: raw {raw_rate:>10.0f} img/s, service {rate:>10.0f} img/s, p99 {p99:.1f} ms")

result = {"model": model, "version": version, "provider": active,
          "onnxruntime": ort.__version__, "rows": rows}
(out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
lines = [f"GPU check: {model} v{version} on {active} (ONNX Runtime {ort.__version__})", "",
         "| batch | raw ONNX Runtime images/s | service images/s | service p99 ms |",
         "| ---: | ---: | ---: | ---: |"]
lines += [f"| {r['batch']} | {r['raw_images_per_s']:.0f} | {r['service_images_per_s']:.0f} "
          f"| {r['service_p99_ms']:.1f} |" for r in rows]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
EOF

echo "== installing the training extras in $WORK/train"
python3 -m venv "$WORK/train"
TPY=$WORK/train/bin/python
timeout 600 "$TPY" -m pip install -q "${PIP_EXTRA[@]}" "${ROOT}[train,experiments]"
"$TPY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'PyTorch sees no CUDA device')" \
    || fail "the training venv's PyTorch cannot use the GPU"
export PYTHONPATH=$ROOT  # bench/ is not installed: its modules run from the checkout

echo "== training speed on CUDA: fp32 and bf16, standard and channels-last, paper nets and patch"
mkdir -p "$OUT_DIR/train"
(cd "$ROOT" && timeout 240 "$TPY" -m bench.train_speed.precision --device cuda --synthetic \
    --images 20000 --rgb-images 10000 --patch-images 2000 --seconds 2 --out "$OUT_DIR/train") \
    || fail "bench.train_speed.precision failed on CUDA"
grep -q "bf16 native on this device: true" "$OUT_DIR/train/precision.md" \
    || echo "gpu_check: warning: this GPU has no native bf16 (compute capability below 8.0)" >&2

echo "== a patch model trained on CUDA"
(cd "$ROOT" && "$TPY" -c "
import sys; from pathlib import Path
from bench.train_speed.accuracy import photo_folder
photo_folder(Path(sys.argv[1]), 300, 60, size=128)" "$WORK/photos") || fail "no photograph folder"
timeout 240 "$WORK/train/bin/deepsvdd" train --model patch --dataset folder \
    --data-dir "$WORK/photos" --normal-class normal --channels 1 --image-size 128 \
    --patch-epochs 5 --device cuda --name photo-patch --models-dir "$WORK/models" --quiet \
    >"$OUT_DIR/patch_train.json" || fail "training the patch model on CUDA failed"
# The last line `deepsvdd train` prints is its JSON summary, which names the model file.
PATCH_MODEL=$("$TPY" -c "import json, sys; print(json.loads(sys.stdin.readlines()[-1])['model_path'])" \
    <"$OUT_DIR/patch_train.json")
[[ -f "$PATCH_MODEL" ]] || fail "the patch model was not exported"

echo "== 1024x1024 JPEGs decoded on the CPU feeding the patch model on $PROVIDERS"
(cd "$ROOT" && "$TPY" -c "
import importlib.resources as r, sys
from PIL import Image
for name in ('rocket.jpg', 'coffee.png', 'astronaut.png', 'chelsea.png'):
    with r.as_file(r.files('skimage') / 'data' / name) as p:
        Image.open(p).convert('RGB').resize((1024, 1024)).save(f'{sys.argv[1]}/{name}.jpg', quality=90)
" "$WORK") || fail "no JPEG photographs"
(cd "$ROOT" && timeout 120 "$PY" -m bench.harness.cuda_feed "$PATCH_MODEL" "$WORK"/*.jpg \
    --providers "$PROVIDERS" --batch 64 --workers "$(nproc)" --seconds 5 \
    --out "$OUT_DIR/cuda_feed.json") || fail "decoding feeding CUDA inference failed"

echo "== results in $OUT_DIR"
cat "$OUT_DIR/gpu_check.md" "$OUT_DIR/train/precision.md" "$OUT_DIR/cuda_feed.json"
