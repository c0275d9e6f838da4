"""The int8 model file: quantized weights, their scales and the float params.

One safetensors file (:data:`QUANT_FILE` in a folder) holds every tensor of
a :class:`~flatjax.quant.model.QuantizedParams` under its ``/``-joined param
path: a quantized kernel as int8 ``[in, out]`` (Flax's layout) with its
float32 scale under ``PATH.scale`` (shape ``[]`` or ``[out]``), every other
param as float32. The header's metadata records the format and the
:class:`~flatjax.quant.int8.QuantConfig` (JSON, its ``name`` included), so
:func:`load_quantized` gives back identical QuantizedParams. The model's
architecture and tokenizer stay in the Hugging Face folder beside it
(``config.json``, ``vocab.txt``), as ``save_pretrained`` writes them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import flax.linen as nn

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from flatjax.errors import FlatjaxInputError
from flatjax.data.tasks import TaskSpec
from flatjax.models import bert, pretrained
from flatjax.models.pretrained import torch_state_dict
from flatjax.quant.int8 import QArray, QuantConfig
from flatjax.quant.model import QuantizedParams, _check_quantized, _is_qarray, dequantize_params
from flatjax.sparsity.masks import path_str

FORMAT = "flatjax-int8"
QUANT_FILE = "model.int8.safetensors"
SCALE_SUFFIX = ".scale"


def _host(x: Any) -> np.ndarray:
  # order="C", not ascontiguousarray, which turns a 0-d scale into shape [1].
  return np.asarray(jax.device_get(x), order="C")


def quantized_tensors(qparams: QuantizedParams) -> dict[str, np.ndarray]:
  """The file's tensors: ``PATH`` (int8 or float32) and ``PATH.scale``."""
  _check_quantized(qparams)
  tensors: dict[str, np.ndarray] = {}
  flat = jax.tree_util.tree_flatten_with_path(qparams.params, is_leaf=_is_qarray)[0]
  for path, leaf in flat:
    name = path_str(path)
    if _is_qarray(leaf):
      entries = {name: _host(leaf.values).astype(np.int8),
                 name + SCALE_SUFFIX: _host(leaf.scale).astype(np.float32)}
    else:
      entries = {name: _host(leaf)}
    for key, value in entries.items():
      if key in tensors:
        raise FlatjaxInputError(f"two tensors would share the name {key!r}")
      tensors[key] = value
  return tensors


def _metadata(config: QuantConfig, extra: dict[str, str] | None) -> dict[str, str]:
  return {**(extra or {}), "format": FORMAT, "quant_config": json.dumps(config.to_dict())}


def save_quantized(path: str | Path, qparams: QuantizedParams,
                   metadata: dict[str, str] | None = None) -> Path:
  """Writes ``qparams`` to ``path``: a ``.safetensors`` file, else a folder (made if
  need be) that gets :data:`QUANT_FILE` inside.

  ``metadata``: extra header strings (where the model came from). Written to
  a temporary name and renamed, so a reader never sees half a file.
  Returns the file written.
  """
  from safetensors.numpy import save_file
  _check_quantized(qparams)
  path = Path(path)
  if path.is_dir() or path.suffix != ".safetensors":  # "RUN/int8": a folder, made if need be
    path = path / QUANT_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  save_file(quantized_tensors(qparams), str(tmp), metadata=_metadata(qparams.config, metadata))
  tmp.replace(path)
  return path


def _resolve(path: str | Path) -> Path:
  path = Path(path)
  if path.is_dir():
    path = path / QUANT_FILE
  if not path.is_file():
    raise FlatjaxInputError(f"int8 model file {path} does not exist")
  return path


def quantized_metadata(path: str | Path) -> dict[str, str]:
  """The header strings of an int8 file (``format``, ``quant_config``, extras)."""
  from safetensors import SafetensorError, safe_open
  path = _resolve(path)
  try:
    with safe_open(str(path), "numpy") as f:
      return dict(f.metadata() or {})
  except (SafetensorError, OSError) as e:
    raise FlatjaxInputError(f"{path} is not a safetensors file: {e}") from None


def load_quantized(path: str | Path) -> QuantizedParams:
  """Reads a file written by :func:`save_quantized` back into QuantizedParams
  (arrays on the default device; equal, leaf for leaf, to what was saved)."""
  from safetensors.numpy import load_file
  path = _resolve(path)
  meta = quantized_metadata(path)
  if meta.get("format") != FORMAT:
    raise FlatjaxInputError(f"{path} is not a flatjax int8 file (format "
                            f"{meta.get('format')!r}, expected {FORMAT!r})")
  try:
    config = QuantConfig(**json.loads(meta["quant_config"]))
  except (KeyError, TypeError, json.JSONDecodeError) as e:
    raise FlatjaxInputError(f"{path}: unreadable quant_config in the header ({e})") from None
  stored = load_file(str(path))
  flat: dict[str, Any] = {}
  scales = {k for k in stored if k.endswith(SCALE_SUFFIX)
            and stored.get(k[:-len(SCALE_SUFFIX)], np.empty(0)).dtype == np.int8}
  for name, value in stored.items():
    if name in scales:
      continue
    if value.dtype == np.int8:
      scale = stored.get(name + SCALE_SUFFIX)
      if scale is None:
        raise FlatjaxInputError(f"{path}: int8 tensor {name} has no {name + SCALE_SUFFIX}")
      flat[name] = QArray(jnp.asarray(value), jnp.asarray(scale))
    else:
      flat[name] = jnp.asarray(value)
  if not any(_is_qarray(v) for v in flat.values()):
    raise FlatjaxInputError(f"{path} holds no int8 tensor")
  return QuantizedParams(traverse_util.unflatten_dict(flat, sep="/"), config)


def file_sizes(qparams: QuantizedParams, metadata: dict[str, str] | None = None) -> dict[str, Any]:
  """Bytes of the int8 file and of the float32 ``model.safetensors`` of the same params.

  ``int8_bytes``: what :func:`save_quantized` writes (with the same
  ``metadata``); ``fp32_bytes``: what ``flatjax.models.save_pretrained``
  writes for the dequantized params (PyTorch names, float32); ``ratio``:
  their quotient. Both are serialised in memory, nothing is written.
  """
  from safetensors.numpy import save
  _check_quantized(qparams)
  int8_bytes = len(save(quantized_tensors(qparams), metadata=_metadata(qparams.config, metadata)))
  fp32_bytes = len(save(torch_state_dict(dequantize_params(qparams)), metadata={"format": "pt"}))
  return {"int8_bytes": int8_bytes, "fp32_bytes": fp32_bytes, "ratio": int8_bytes / fp32_bytes}


@dataclasses.dataclass
class QuantizedModel:
  """An int8 model folder, loaded: ``quantized_apply(module, qparams, ...)`` runs it."""
  module: nn.Module
  qparams: QuantizedParams
  config: bert.BertConfig
  task: TaskSpec | None
  source_dir: Path

  @property
  def tokenizer_dir(self) -> Path:
    return self.source_dir


def is_quantized_model(path: str | Path) -> bool:
  """Whether ``path`` is a folder holding an int8 model file."""
  return (Path(path) / QUANT_FILE).is_file()


def save_quantized_model(out_dir: str | Path, qparams: QuantizedParams, config: bert.BertConfig,
                         task: TaskSpec | None = None, tokenizer_dir: str | Path | None = None,
                         metadata: dict[str, str] | None = None) -> Path:
  """A self-contained int8 model folder: :data:`QUANT_FILE`, ``config.json`` and
  the tokenizer (as ``flatjax.models.save_pretrained`` writes them, minus the
  float weights); :func:`load_quantized_model` reads it back."""
  out = pretrained.save_architecture(out_dir, config, task, tokenizer_dir)
  save_quantized(out / QUANT_FILE, qparams, metadata)
  return out


def load_quantized_model(path: str | Path, task: str | TaskSpec | None = None,
                         dtype: Any = jnp.float32) -> QuantizedModel:
  """Loads a folder written by :func:`save_quantized_model` (the task: ``task``,
  else the one its ``config.json`` records). Every param the architecture
  needs must be in the file, with its shape."""
  folder = Path(path)
  qparams = load_quantized(folder)
  _, config, spec = pretrained.read_architecture(folder, task)
  module = pretrained.build_module(config, spec, dtype)
  expected = pretrained.param_shapes(module)
  flat = traverse_util.flatten_dict(qparams.params, sep="/")  # a QArray is not a dict: a leaf
  got = {k: tuple(v.values.shape if _is_qarray(v) else v.shape) for k, v in flat.items()}
  if set(got) != set(expected):
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    raise FlatjaxInputError(f"{folder}: the int8 file does not fit its config.json "
                            f"(missing {missing[:5]}, unexpected {extra[:5]})")
  for k, shape in got.items():
    if shape != tuple(expected[k].shape):
      raise FlatjaxInputError(f"{folder}: {k} has shape {shape}, config.json implies "
                              f"{tuple(expected[k].shape)}")
  return QuantizedModel(module, qparams, config, spec, folder)
