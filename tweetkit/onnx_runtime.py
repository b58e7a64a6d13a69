"""`predict`/`evaluate --runtime onnx`: a fine-tuned classifier or tagger run by ONNX Runtime.

The graph is exported from the model's own weights on first use (torch.onnx's TorchScript
exporter, dynamic batch and sequence axes) and cached in MODEL/onnx-cache/, written
atomically under a key of the weights' and config's SHA-256 and the export settings, so a
retrained model exports anew.  int8 is ONNX Runtime's dynamic quantization of the encoder
layers' weight MatMuls (a scale per output channel), leaving in fp32 the first layers
(modeling.int8_layer_quantized) and everything else, as torch's int8 does.

Nothing runs code from the model directory: the weights load through modeling.load_pretrained
(safetensors, trust_remote_code off), and a cached graph is data that ONNX Runtime interprets
with its own kernels.  Where the model directory cannot be written, the cache goes under
$XDG_CACHE_HOME/tweetkit/onnx (~/.cache by default), keyed the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from types import SimpleNamespace

from tweetkit.errors import ConfigError

INSTALL = "pip install 'tweetkit[onnx]'"
# What a cached graph depends on besides the weights: a change here exports anew.
EXPORT_SETTINGS = {"format": 1, "exporter": "torchscript", "opset": 17, "int8": "dynamic, per channel, MatMul"}
CACHE_DIR = "onnx-cache"
# The files whose bytes decide the graph: the weights (any format HF loads) and the config.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def require() -> None:
    """A one-line error naming the extra when ONNX Runtime is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError(f"--runtime onnx needs ONNX Runtime, which is not installed: {INSTALL}") from None


def weights_key(path: str, precision: str) -> str:
    """SHA-256 of the weights, the config, the export settings and the versions that made the graph."""
    import onnxruntime
    import torch

    digest = hashlib.sha256()
    names = sorted(n for n in os.listdir(path) if n.endswith(WEIGHT_SUFFIXES) or n == "config.json")
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    settings = {**EXPORT_SETTINGS, "precision": precision, "torch": torch.__version__, "ort": onnxruntime.__version__}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def cache_dirs(path: str) -> list[str]:
    """Where graphs are cached: beside the model, else (not writable) the user's cache."""
    user = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tweetkit", "onnx")
    return [os.path.join(path, CACHE_DIR), user]


def graph_path(path: str, kind: str, precision: str, log) -> str:
    """The cached graph of the model in `path` at `precision`, exported (and quantized) first if missing."""
    key = weights_key(path, precision)
    name = f"{precision}-{key}.onnx"
    for directory in cache_dirs(path):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    for directory in cache_dirs(path):
        try:
            os.makedirs(directory, exist_ok=True)
            handle, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=directory)
        except OSError:
            continue  # a read-only model directory: the user's cache
        os.close(handle)
        try:
            if precision == "int8":
                source = graph_path(path, kind, "fp32", log)
                log(f"quantizing the ONNX graph to int8 in {directory} (once per model)")
                quantize(source, partial)
            else:
                log(f"exporting the model to ONNX in {directory} (once per model)")
                export(path, kind, partial)
            os.replace(partial, os.path.join(directory, name))  # atomic: a reader never sees half a graph
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        remove_stale(directory, precision, name)
        return os.path.join(directory, name)
    raise ConfigError(f"--runtime onnx: no writable cache for the exported graph ({', '.join(cache_dirs(path))})")


def remove_stale(directory: str, precision: str, keep: str) -> None:
    """Graphs of earlier weights at this precision: nothing will load them again.  Only in the
    model's own cache: the user's is shared by many models."""
    if os.path.basename(directory) != CACHE_DIR:
        return
    for name in os.listdir(directory):
        if name.startswith(f"{precision}-") and name.endswith(".onnx") and name != keep:
            os.remove(os.path.join(directory, name))


def input_names(kind: str) -> list[str]:
    """A classifier's batches hold one length each and need no mask (modeling.predict); a tagger's are padded."""
    return ["input_ids", "attention_mask"] if kind == "tagging" else ["input_ids"]


def export(path: str, kind: str, output: str) -> None:
    """The fp32 graph of the fine-tuned model in `path`, batch and sequence axes dynamic.

    The TorchScript exporter (dynamo=False): it needs nothing beyond torch and onnx, where the
    dynamo exporter needs onnxscript, and it traces these encoders exactly.  Traced on a padded
    batch, so that no branch that an all-ones mask would take is frozen into a tagger's graph."""
    import warnings

    import torch

    from tweetkit import kinds
    from tweetkit.modeling import load_pretrained

    model = load_pretrained(kinds.get(kind).head(), path).eval()
    ids = torch.full((2, 8), 5, dtype=torch.long)
    inputs = {"input_ids": ids}
    if kind == "tagging":
        inputs["attention_mask"] = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    axes = {name: {0: "batch", 1: "length"} for name in inputs}
    axes["logits"] = {0: "batch", 1: "length"} if kind == "tagging" else {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes: fixed for encoders
        torch.onnx.export(model, (), output, kwargs=inputs, input_names=list(inputs), output_names=["logits"],
                          dynamic_axes=axes, opset_version=EXPORT_SETTINGS["opset"], dynamo=False)  # fmt: skip


def quantized_nodes(graph) -> list[str]:
    """The MatMuls int8 quantizes: those with a weight, in the encoder layers modeling.int8_layer_quantized
    names (attention scores, embeddings, pooler and head stay fp32, as in torch's int8)."""
    from tweetkit.modeling import int8_layer_quantized

    weights = {tensor.name for tensor in graph.initializer}
    chosen = []
    for node in graph.node:
        layer = re.search(r"/layer\.(\d+)/", node.name)  # the exporter names nodes by module path
        if node.op_type == "MatMul" and node.input[1] in weights and layer:
            if int8_layer_quantized(int(layer.group(1))):
                chosen.append(node.name)
    return chosen


def quantize(fp32: str, output: str) -> None:
    """Dynamic int8 (weights with a scale per output channel, activations quantized per batch)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = quantized_nodes(onnx.load(fp32, load_external_data=False).graph)
    if not nodes:
        raise ConfigError("--precision int8: no encoder layer in this graph to quantize (not a BERT-like encoder)")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process goes to the root logger
    try:
        quantize_dynamic(fp32, output, per_channel=True, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                         op_types_to_quantize=["MatMul"])  # fmt: skip
    finally:
        root.setLevel(level)


class OnnxModel:
    """An ONNX Runtime session called as predict_sequences/predict_tags call a torch model:
    model(input_ids=..., attention_mask=...).logits, on the CPU."""

    def __init__(self, graph: str, kind: str, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # The wait policy tweetkit.threads chose for OpenMP, for ONNX Runtime's own pool: sleep when sharing.
        spinning = os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.graph, self.inputs = graph, input_names(kind)

    def __call__(self, input_ids, attention_mask=None):
        import torch

        feed = {"input_ids": input_ids.cpu().numpy()}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = (
                (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).cpu().numpy()
            )
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def load(path: str, kind: str, precision: str, log) -> OnnxModel:
    """The model in `path` as an ONNX Runtime session at `precision` (fp32 or int8)."""
    from tweetkit import threads

    return OnnxModel(graph_path(path, kind, precision, log), kind, threads.chosen())
