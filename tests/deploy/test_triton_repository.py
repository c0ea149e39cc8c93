"""models/ is a Triton model repository: every config.pbtxt parses as Triton's own ModelConfig
protobuf (text format) and matches its model.onnx: names, datatypes, dims, batch axis."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx
import pytest
import tritonclient
from google.protobuf import text_format
from onnx import TensorProto

from modelfile import MODEL_FILE, OUTPUT_NAMES, SCORE_OUTPUT, TRITON_CONFIG
from modelfile.layout import triton_config
from modelfile.metadata import METADATA_KEY, ModelMetadata

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "models").glob(f"*/{TRITON_CONFIG}"))
ONNX_TO_TRITON: dict[int, str] = {TensorProto.FLOAT: "TYPE_FP32"}


def triton_protos() -> ModuleType:
    """tritonclient's generated model_config_pb2, loaded alone (its package imports grpc)."""
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PB = triton_protos()


def parse(text: str) -> Any:
    return text_format.Parse(text, PB.ModelConfig())


def graph_tensors(model: onnx.ModelProto) -> dict[str, tuple[int, list[int | str]]]:
    """name -> (element type, dims with symbolic axes as their names), inputs and outputs."""
    found = {}
    for value in [*model.graph.input, *model.graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in tensor.shape.dim]
        found[value.name] = (tensor.elem_type, dims)
    return found


def check_against(config: Any, model: onnx.ModelProto) -> None:
    tensors = graph_tensors(model)
    assert {t.name for t in config.input} == {i.name for i in model.graph.input}
    assert {t.name for t in config.output} == set(OUTPUT_NAMES) <= set(tensors)
    assert config.max_batch_size > 0
    for declared in [*config.input, *config.output]:
        elem_type, dims = tensors[declared.name]
        assert PB.DataType.Name(declared.data_type) == ONNX_TO_TRITON[elem_type]
        # With max_batch_size > 0 the batch axis is left out; the graph's must be dynamic.
        assert isinstance(dims[0], str), f"{declared.name}: fixed batch axis {dims}"
        if declared.HasField("reshape"):
            # Triton's way to declare an [N] output: dims [1], reshaped to [].
            assert list(declared.dims) == [1] and list(declared.reshape.shape) == []
            assert dims[1:] == []
        else:
            assert list(declared.dims) == dims[1:]
    (score,) = [o for o in config.output if o.name == SCORE_OUTPUT]
    assert score.HasField("reshape")


def test_the_repository_ships_configs() -> None:
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=[p.parent.name for p in CONFIGS])
def test_config_pbtxt_matches_its_model(path: Path) -> None:
    config = parse(path.read_text())
    assert config.name == path.parent.name
    assert config.platform == "onnxruntime_onnx"
    versions = sorted(int(p.parent.name) for p in path.parent.glob(f"*/{MODEL_FILE}"))
    assert versions, f"no {MODEL_FILE} under {path.parent}"
    assert config.version_policy.latest.num_versions == 1
    model = onnx.load(str(path.parent / str(versions[-1]) / MODEL_FILE))
    check_against(config, model)
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert path.read_text() == triton_config(meta, config.max_batch_size)


def test_generated_config_matches_a_new_model(tiny_models_dir: Path) -> None:
    model = onnx.load(str(tiny_models_dir / "tiny" / "1" / MODEL_FILE))
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    config = parse(triton_config(meta, max_batch=64))
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    check_against(config, model)


def test_a_mismatch_is_caught(tiny_models_dir: Path) -> None:
    model = onnx.load(str(tiny_models_dir / "tiny" / "1" / MODEL_FILE))
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    wrong = triton_config(meta).replace("dims: [ 1, 28, 28 ]", "dims: [ 3, 28, 28 ]")
    with pytest.raises(AssertionError):
        check_against(parse(wrong), model)
