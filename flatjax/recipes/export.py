"""``flatjax export RUN --format onnx [--int8]``: a fine-tuned, pruned, int8 or CoFi model as
an ONNX file that runs without JAX (onnxruntime, or any ONNX runtime).

``RUN`` is a ``flatjax train`` run folder (its ``best/`` model; an IMP round's too: its
pruned weights are zeros in the saved model), a CoFi run folder (its exported ``pruned/``
model, per-layer widths and all), an int8 model folder (``flatjax quantize``'s
``RUN/int8/SCHEME``) or a model folder. ``--int8`` quantizes a float model first, with
``--scheme`` (PyTorch's dynamic recipe by default), keeping flatjax's int8 weights and its
activation quantization in the graph (:mod:`flatjax.export.onnx_graph`). The output folder
(``RUN/onnx`` or ``RUN/onnx-int8`` by default) gets::

  model.onnx     the graph: inputs input_ids, attention_mask, token_type_ids (int64
                 [batch, length]); outputs logits (or start_logits, end_logits)
  config.json    the architecture and task, as flatjax and transformers write it
  vocab.txt ...  the tokenizer's files
  export.json    what was exported, and (--check, the default) how far onnxruntime's
                 outputs are from flatjax's on a random batch

Needs the export extra: ``pip install 'flatjax[export]'`` (onnx, onnxruntime).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flatjax import files, provenance
from flatjax.console import say
from flatjax.errors import FlatjaxInputError
from flatjax.export import onnx_graph
from flatjax.models import pretrained
from flatjax.models.bert import MODEL_INPUTS
from flatjax.quant import export as quant_export, model as quant_model
from flatjax.quant.int8 import DEFAULT as DEFAULT_SCHEME, get_config as quant_config
from flatjax.train import runs, steps

FORMATS = ("onnx",)
MODEL_FILE = "model.onnx"
MARKER = "export.json"
# fp32 logits further from flatjax's than this are reported as a mismatch.
FLOAT_TOLERANCE = 1e-4


@dataclasses.dataclass
class ExportConfig:
  """A ``flatjax export`` run (the flags map 1:1)."""
  run: str
  """a flatjax train run folder (its best/ model), a CoFi run folder (its pruned/ model), an
  int8 model folder from flatjax quantize, or a model folder"""
  format: str = "onnx"
  """the file format (onnx)"""
  int8: bool = False
  """quantize a float model with --scheme before exporting it"""
  scheme: str = DEFAULT_SCHEME
  """the int8 recipe for --int8 (dynamic: PyTorch's quantize_dynamic)"""
  task: str | None = None
  """the task (default: the run's)"""
  output: str | None = None
  """folder (default: RUN/onnx, or RUN/onnx-int8)"""
  check: bool = True
  """run the ONNX model in onnxruntime beside flatjax on a random batch and record the gap"""
  progress: bool = True
  """print what was written"""

  def validate(self) -> None:
    if self.format not in FORMATS:
      raise FlatjaxInputError(f"unknown export format {self.format!r}; known: "
                              f"{', '.join(FORMATS)}")
    quant_config(self.scheme)


@dataclasses.dataclass
class _Source:
  """What is exported: the params (float or quantized), architecture, task, tokenizer."""
  module: Any
  params: Any
  config: Any
  task: Any
  model_dir: Path
  run_dir: Path


def _source(config: ExportConfig) -> _Source:
  root = Path(config.run)
  if (root / "cofi.json").is_file():
    if not (root / "pruned" / "config.json").is_file():
      raise FlatjaxInputError(f"CoFi run {root} has no exported pruned/ model yet")
    root = root / "pruned"
  if quant_export.is_quantized_model(root):
    loaded = quant_export.load_quantized_model(root, config.task)
    if loaded.task is None:
      raise FlatjaxInputError(f"int8 model {root} does not record its task; pass --task")
    return _Source(loaded.module, loaded.qparams, loaded.config, loaded.task, root, root)
  run = runs.resolve_finetuned(str(root), config.task)
  model = pretrained.from_pretrained(run.model_dir, run.task)
  params = model.params
  if config.int8:
    params = quant_model.quantize_params(params, config.scheme)
  return _Source(model.module, params, model.config, run.task, run.model_dir,
                 run.run_dir or run.model_dir)


def _check_output(out: Path) -> None:
  if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / MARKER).is_file())):
    raise FlatjaxInputError(f"output {out} exists and holds something other than an export; "
                            "use another --output")


def random_batch(config, rows: int = 4, length: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
  """Token ids, a mask with rows of different lengths and segment ids, int64."""
  rng = np.random.default_rng(seed)
  length = min(length, config.max_position_embeddings)
  lengths = np.linspace(max(2, length // 4), length, rows).astype(int)
  return {"input_ids": rng.integers(1, config.vocab_size, (rows, length)),
          "attention_mask": (np.arange(length)[None] < lengths[:, None]).astype(np.int64),
          "token_type_ids": rng.integers(0, config.type_vocab_size, (rows, length))}


def _flatjax_outputs(source: _Source, batch: dict) -> dict[str, np.ndarray]:
  inputs = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}
  if isinstance(source.params, quant_model.QuantizedParams):
    step = quant_model.make_quantized_eval_step(source.module, source.params.config)
  else:
    step = steps.make_eval_step(source.module)
  return {k: np.asarray(v) for k, v in jax.jit(step)(source.params, None, inputs).items()}


def check_against_flatjax(path: Path, source: _Source) -> dict[str, Any]:
  """onnxruntime's outputs on :func:`random_batch` against flatjax's: the largest
  absolute difference per output and the share of rows whose argmax agrees."""
  ort = require_onnxruntime()
  session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
  batch = random_batch(source.config)
  got = dict(zip([o.name for o in session.get_outputs()], session.run(None, batch)))
  want = _flatjax_outputs(source, batch)
  return {"batch": list(batch["input_ids"].shape),
          "max_abs_diff": {k: float(np.max(np.abs(got[k] - want[k]))) for k in got},
          "argmax_agreement": {k: float(np.mean(got[k].argmax(-1) == want[k].argmax(-1)))
                               for k in got}}


def require_onnxruntime():
  try:
    import onnxruntime
  except ImportError:
    raise FlatjaxInputError("checking an ONNX export needs onnxruntime: pip install "
                            "'flatjax[export]' (or pass --no-check)") from None
  return onnxruntime


def run_export(config: ExportConfig) -> dict:
  """Writes the ONNX folder; returns (and writes) ``export.json``."""
  config.validate()
  onnx_graph.require_onnx()
  if config.check:
    require_onnxruntime()
  source = _source(config)
  quantized = isinstance(source.params, quant_model.QuantizedParams)
  out = (Path(config.output) if config.output
         else source.run_dir / ("onnx-int8" if quantized else "onnx"))
  _check_output(out)
  model = onnx_graph.to_onnx(source.params, source.config, source.task,
                             name=f"flatjax-{source.task.name}")
  out.mkdir(parents=True, exist_ok=True)
  (out / MODEL_FILE).write_bytes(model.SerializeToString())
  pretrained.save_architecture(out, source.config, source.task, source.model_dir)
  provenance.write_run_json(out, config, {"model": source.model_dir})
  result: dict[str, Any] = {
      "run": config.run, "model": str(source.model_dir), "task": source.task.name,
      "format": config.format, "file": MODEL_FILE, "bytes": (out / MODEL_FILE).stat().st_size,
      "opset": onnx_graph.OPSET, "inputs": list(MODEL_INPUTS),
      "int8": source.params.config.to_dict() if quantized else None,
      "structurally_pruned": source.config.is_structurally_pruned}
  if config.check:
    result["check"] = check_against_flatjax(out / MODEL_FILE, source)
  files.write_json(out / MARKER, result)
  if config.progress:
    say(f"wrote {out / MODEL_FILE} ({result['bytes'] / 2**20:.1f} MiB"
        + (f", int8 {source.params.config.name}" if quantized else "") + ")")
    if config.check:
      gap = max(result["check"]["max_abs_diff"].values())
      say(f"onnxruntime vs flatjax on a random batch: largest output difference {gap:.2e}")
      if not quantized and gap > FLOAT_TOLERANCE:
        say(f"warning: above {FLOAT_TOLERANCE:g}; please report it with {out / MARKER}")
  return result
