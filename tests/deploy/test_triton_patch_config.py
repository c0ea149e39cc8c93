"""A patch model's config.pbtxt parses as Triton's own ModelConfig and lists `anomaly_map` with
the dims of its graph's output, beside `score` and `embedding`."""

from __future__ import annotations

from pathlib import Path

import onnx

from modelfile import ANOMALY_MAP_OUTPUT, MODEL_FILE, OUTPUT_NAMES
from modelfile.layout import triton_config
from modelfile.metadata import METADATA_KEY, ModelMetadata
from tests.deploy.test_triton_repository import PB, graph_tensors, parse
from tests.support.patch_models import MAP_SHAPE


def test_a_patch_models_config_lists_its_map(patch_repo: Path) -> None:
    model = onnx.load(str(patch_repo / "patches" / "1" / MODEL_FILE))
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    config = parse(triton_config(meta, max_batch=64))
    tensors = graph_tensors(model)
    assert [o.name for o in config.output] == [*OUTPUT_NAMES, ANOMALY_MAP_OUTPUT]
    (grid,) = [o for o in config.output if o.name == ANOMALY_MAP_OUTPUT]
    assert PB.DataType.Name(grid.data_type) == "TYPE_FP32"
    elem_type, dims = tensors[ANOMALY_MAP_OUTPUT]
    assert isinstance(dims[0], str)  # the batch axis, left out of Triton's dims
    assert list(grid.dims) == dims[1:] == list(MAP_SHAPE)
    assert elem_type == onnx.TensorProto.FLOAT
    image_config = parse(triton_config(meta.model_copy(update={"kind": "image", "patch": None})))
    assert ANOMALY_MAP_OUTPUT not in [o.name for o in image_config.output]
