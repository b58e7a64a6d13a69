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

Once the graph is cached, a run imports neither torch nor transformers (their start-up is most
of a short predict): the config is read as JSON (modeling.load_for_inference), the text
tokenized by the `tokenizers` library from the HF fast tokenizer's own backend, saved beside
the graph at export (load_tokenizer), and the logits turned into records with numpy
(tweetkit.inference.predict_sequences_onnx).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time

from tweetkit.errors import ConfigError
from tweetkit.files import sha256_of, write_atomically

INSTALL = "pip install 'tweetkit[onnx]'"
# What a cached graph depends on besides the weights: a change here exports anew.
EXPORT_SETTINGS = {"format": 1, "exporter": "torchscript", "opset": 17, "int8": "dynamic, per channel, MatMul"}
CACHE_DIR = "onnx-cache"
# The files whose bytes decide the graph: the weights (any format HF loads) and the config.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def require() -> None:
    """A one-line error naming the extra when ONNX Runtime is not installed.  `onnx` is only
    looked for, not imported: export and quantization need it, a cached graph does not, and
    its import is a large share of a short run's start-up."""
    import importlib.util

    try:
        import onnxruntime  # noqa: F401  (every run needs it)
    except ImportError:
        raise ConfigError(f"--runtime onnx needs ONNX Runtime, which is not installed: {INSTALL}") from None
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError(f"--runtime onnx needs the onnx package, which is not installed: {INSTALL}")


def weights_key(path: str, precision: str) -> str:
    """SHA-256 of the weights, the config, the export settings and the versions that made the graph."""
    import onnxruntime

    digest = hashlib.sha256()
    names = sorted(n for n in os.listdir(path) if n.endswith(WEIGHT_SUFFIXES) or n == "config.json")
    digests = file_digests(path, names)
    for name in names:
        digest.update(name.encode() + b"\0" + bytes.fromhex(digests[name]))
    settings = {**EXPORT_SETTINGS, "precision": precision, "torch": version("torch"), "ort": onnxruntime.__version__}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def version(package: str) -> str:
    """An installed package's version without importing it (importing torch takes seconds)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


# The SHA-256 of each file weights_key hashes, under its (size, mtime, ctime, inode), in the
# model's cache: a run then reads the weights' stat, not their bytes.  A digest is recorded
# only for a file unchanged for RACY_NS, so a rewrite within the clock's resolution that keeps
# the size is still hashed anew (git's "racy" rule).
DIGESTS = "digests.json"
RACY_NS = 2_000_000_000


def file_digests(path: str, names: list[str]) -> dict[str, str]:
    """{name: hex SHA-256} of the files `names` in `path`, from the memo where their stat matches."""
    memo_path = os.path.join(path, CACHE_DIR, DIGESTS)
    try:
        with open(memo_path, encoding="utf-8") as handle:
            memo = json.load(handle)
    except (OSError, ValueError):
        memo = {}
    digests, fresh = {}, {}
    for name in names:
        stat = os.stat(os.path.join(path, name))
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        known = memo.get(name) if isinstance(memo, dict) else None
        if isinstance(known, dict) and known.get("stat") == stamp and isinstance(known.get("sha256"), str):
            digests[name] = known["sha256"]
            continue
        digests[name] = sha256_of(os.path.join(path, name))
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > RACY_NS:
            fresh[name] = {"stat": stamp, "sha256": digests[name]}
    if fresh and os.path.isdir(os.path.dirname(memo_path)):
        kept = {name: memo[name] for name in names if isinstance(memo, dict) and name in memo}
        try:
            write_atomically(memo_path, json.dumps(kept | fresh))
        except OSError:  # a read-only model directory: the memo only saves time
            pass
    return digests


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


def remove_stale(directory: str, prefix: str, keep: str, suffix: str = ".onnx") -> None:
    """Graphs of earlier weights at this precision (`prefix`), or tokenizers of earlier files: nothing
    will load them again.  Only in the model's own cache: the user's is shared by many models."""
    if os.path.basename(directory) != CACHE_DIR:
        return
    for name in os.listdir(directory):
        if name.startswith(f"{prefix}-") and name.endswith(suffix) and name != keep:
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
    from tweetkit.threads import configure_torch

    configure_torch()
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
    """An ONNX Runtime session on the CPU: model(input_ids[, attention_mask]) -> logits, numpy in and out."""

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
        import numpy as np

        feed = {"input_ids": input_ids}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = attention_mask if attention_mask is not None else np.ones_like(input_ids)
        (logits,) = self.session.run(["logits"], feed)
        return logits


def load(path: str, kind: str, precision: str, log) -> OnnxModel:
    """The model in `path` as an ONNX Runtime session at `precision` (fp32 or int8)."""
    from tweetkit import threads

    return OnnxModel(graph_path(path, kind, precision, log), kind, threads.chosen())


# --- the tokenizer, without transformers ------------------------------------------------------

TOKENIZER_FORMAT = 1  # a change in how the tokenizer is saved below: saved anew


def tokenizer_key(path: str, tagging: bool) -> str:
    """SHA-256 of the model's tokenizer files, whether it takes pre-split words, and the versions
    of the libraries that made and read the saved tokenizer."""
    from tweetkit.modeling import SAVED_TOKENIZER_FILES

    digest = hashlib.sha256()
    names = sorted(name for name in SAVED_TOKENIZER_FILES if os.path.isfile(os.path.join(path, name)))
    for name in names:
        digest.update(name.encode() + b"\0" + bytes.fromhex(sha256_of(os.path.join(path, name))))
    settings = {"format": TOKENIZER_FORMAT, "tagging": tagging, "transformers": version("transformers"),
                "tokenizers": version("tokenizers")}  # fmt: skip
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def load_tokenizer(path: str, kind: str, max_length: int):
    """A `tokenizers.Tokenizer` that gives the ids (and a tagger's word ids) of modeling.load_tokenizer's
    HF tokenizer, truncating at `max_length` (a tagger's batches also padded as HF pads them).

    It is the HF fast tokenizer's own backend, saved once in the cache beside the graph: the
    settings transformers applies as it loads (a prefix space for pre-split words, lower-casing,
    the special tokens' template) are then in the file, whatever the model directory holds
    (tokenizer.json or only vocab.txt).  Saving it imports transformers; reading it does not."""
    from tokenizers import Tokenizer

    tagging = kind == "tagging"
    name = f"tokenizer-{tokenizer_key(path, tagging)}.json"
    found = next((os.path.join(d, name) for d in cache_dirs(path) if os.path.isfile(os.path.join(d, name))), None)
    tokenizer = Tokenizer.from_file(found) if found else save_tokenizer(path, tagging, name)
    tokenizer.enable_truncation(max_length)  # as HF truncates one sequence (longest_first, stride 0, right)
    if not tagging:
        tokenizer.no_padding()  # classifier batches hold one length each
    return tokenizer


def save_tokenizer(path: str, tagging: bool, name: str):
    """The backend of modeling.load_tokenizer's HF tokenizer, padding as its padding=True does,
    written to the first writable cache as `name`."""
    from tweetkit.modeling import load_tokenizer

    hf = load_tokenizer(path, tagging=tagging)
    backend = hf.backend_tokenizer
    backend.no_truncation()
    backend.enable_padding(direction=hf.padding_side, pad_id=hf.pad_token_id, pad_type_id=hf.pad_token_type_id,
                           pad_token=hf.pad_token)  # fmt: skip
    for directory in cache_dirs(path):
        try:
            os.makedirs(directory, exist_ok=True)
            write_atomically(os.path.join(directory, name), backend.to_str())
        except OSError:
            continue  # not writable: the user's cache next
        if os.path.isfile(os.path.join(directory, name)):
            remove_stale(directory, "tokenizer", name, suffix=".json")
            break
    return backend
