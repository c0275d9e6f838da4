"""The Flax BERT against PyTorch's ``BertModel`` on the same device, in float32.

The same checkpoint folder is loaded by both; the largest absolute difference of the
last hidden state (real tokens only) and of the pooled output is reported, with JAX's
default matmul precision and with ``"highest"``: on a GPU JAX's default lets XLA use
TF32 for float32 matmuls, while PyTorch's default does not
(``torch.backends.cuda.matmul.allow_tf32`` is False).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOLERANCE = 1e-4


def _torch_outputs(model_dir: Path, batch: dict, device) -> dict:
  import torch
  import transformers
  # float32 whatever the file stores: transformers 5 would keep a float16 checkpoint's dtype.
  model = transformers.BertModel.from_pretrained(str(model_dir), dtype=torch.float32)
  model = model.to(device).eval()
  with torch.no_grad():
    out = model(**{k: torch.from_numpy(v).to(device) for k, v in batch.items()})
  return {"last_hidden_state": out.last_hidden_state.float().cpu().numpy(),
          "pooler_output": out.pooler_output.float().cpu().numpy()}


def _flax_outputs(pre, batch: dict, precision: str) -> dict:
  import jax
  import jax.numpy as jnp
  with jax.default_matmul_precision(precision):
    out = jax.jit(lambda p, b: pre.module.apply({"params": p}, *b))(
        pre.params, tuple(jnp.asarray(batch[k]) for k in
                          ("input_ids", "attention_mask", "token_type_ids")))
  return {k: np.asarray(out[k]) for k in ("last_hidden_state", "pooler_output")}


def compare(model_dir: Path, batch: dict, device) -> dict:
  """Max |flatjax - PyTorch| per output and JAX precision, and whether each is within
  :data:`TOLERANCE`."""
  from flatjax.models import from_pretrained
  ref = _torch_outputs(model_dir, batch, device)
  pre = from_pretrained(model_dir)  # loaded once; each precision compiles its own forward
  real = batch["attention_mask"].astype(bool)
  row = {"tolerance": TOLERANCE, "batch": list(batch["input_ids"].shape)}
  for precision in ("default", "highest"):
    out = _flax_outputs(pre, batch, precision)
    hidden = float(np.abs(out["last_hidden_state"] - ref["last_hidden_state"])[real].max())
    pooled = float(np.abs(out["pooler_output"] - ref["pooler_output"]).max())
    row[precision] = {"last_hidden_state": hidden, "pooler_output": pooled,
                      "within": max(hidden, pooled) <= TOLERANCE}
  return row
