"""Inference speed of structurally pruned (exported) BERTs against the unpruned teacher.

CoFi (Xia et al. 2022) prunes heads, whole attention blocks, FFN neurons, whole
FFN blocks and hidden dimensions, and
:func:`flatjax.sparsity.structured.prune_model` exports the gated model as a
smaller dense BERT. This benchmark measures what that buys at inference: the
examples per second of the jitted deterministic forward pass
(``jax.jit(flatjax.train.steps.make_eval_step(module))``, called as
``(params, None, batch)``) of each model on ``step_time.py``'s synthetic batch
(random ids, padded rows, sentence-pair token types; default 32 x 128), and
the speed-up over the teacher.

``--runtime onnx`` times each model's ONNX export (:func:`flatjax.export.to_onnx`,
what ``flatjax export`` writes) in onnxruntime instead, the same check first.

It measures speed only, not accuracy: the pruned models below are built from
gate settings chosen by a fixed rule, not learned, and which weights are kept
does not matter for speed (only how many, and in which shapes). The kept units
are picked by weight magnitude only so the models are not arbitrary.

Models timed, all with the same task head (``sst2``, 2 labels):

* the teacher: ``--model`` (any ``flatjax.models.from_pretrained`` name or
  folder; default ``minilm``, 6 layers, hidden 384, 12 heads, FFN 1536);
* for each ``--sparsity`` s (encoder sparsity, CoFi's measure:
  ``1 - encoder_params(small) / encoder_params(teacher)`` over the Q, K, V,
  attention-output and FFN kernels), a gate setting exported with
  ``prune_model``, in one or both structure families (``--structure``).
  With L layers, H heads of width D, FFN width F, hidden size d, and the
  budget B = (1 - s) * encoder_params(teacher):

  - ``uniform``: every layer keeps h heads and f FFN neurons, all blocks and
    hidden dims kept. h = round(H * (1 - s)) (lowered until its attention
    weights, 4 * L * d * h * D, fit B), then f = round((B - 4 L d h D) / (2 L d)),
    clipped to [0, F]: the same fraction of heads and neurons, with f taking up
    the rounding of h.
  - ``layers`` (CoFi-like at high sparsity: fewer layers, narrower hidden):
    d' = round(d * (1 - s / 4)) hidden dims kept; attention blocks kept in the
    lowest n_a = max(1, round(L * (1 - s))) layers and FFN blocks in the lowest
    n_f = max(1, round(L * sqrt(1 - s))) layers, the rest removed whole (a
    layer with neither is gone); if B exceeds the kept blocks at full width,
    FFN and then attention blocks are added back, alternately, until it does
    not. In the kept blocks a common fraction q = B / (d' (4 n_a H D + 2 n_f F))
    of heads and neurons: h = round(H q) (lowered until it fits B), then
    f = round((B - 4 n_a d' h D) / (2 n_f d')), clipped to [0, F].
    For MiniLM: at 60% attention in 2 layers, FFN in 4, hidden 326; at 80%
    1 and 3, hidden 307; at 95% one layer left, hidden 293.

  Kept units by magnitude: heads by the L2 norm of their rows of the layer's
  attention-output kernel, neurons by the L2 norm of their rows of the FFN
  output kernel, hidden dims by the L2 norm of the word-embedding columns. Each
  setting's sparsity is checked to be within 1 point of its target.
* ``--models DIR ...``: exported folders (``save_pretrained`` output of a real
  CoFi run), with their task head, at their actual sparsity (against the
  unpruned architecture they were exported from).

Before timing, every exported synthetic model's logits on the benchmark batch
are checked against the gated teacher's (``module.apply(..., gates=...,
deterministic=True)``, max abs difference <= 1e-4), so a broken export cannot
produce a fast-looking number.

After compiling and warming up, the repeats go round-robin over the models,
one call each (the starting model rotates), so load from other processes hits
all alike. Prints each model's structure, then a table (encoder params,
sparsity, median ms per batch, examples/s, speed-up = teacher median / model
median); ``--output FILE`` appends one JSON line.

    python benchmarks/cofi_speed.py --output benchmarks/results/cofi_speed_cpu.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import make_batch, summarize  # noqa: E402  (the same batch)

LOGIT_TOLERANCE = 1e-4
SPARSITY_TOLERANCE = 0.01


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--length", type=int, default=128, help="sequence length (padded)")
  p.add_argument("--repeats", type=int, default=20, help="timed calls per model (round-robin)")
  p.add_argument("--warmup", type=int, default=2,
                 help="untimed round-robin calls per model after compiling")
  p.add_argument("--model", default="minilm",
                 help="the teacher: flatjax.models.from_pretrained name or folder")
  p.add_argument("--sparsity", type=float, nargs="*", default=[0.6, 0.8, 0.95],
                 help="target encoder sparsities of the synthetic pruned models")
  p.add_argument("--structure", choices=("uniform", "layers", "both"), default="both",
                 help="structure family of the synthetic pruned models (see the docstring)")
  p.add_argument("--models", nargs="*", default=[], metavar="DIR",
                 help="exported structured models (save_pretrained folders) to time too")
  p.add_argument("--malloc", choices=("flatjax", "default"), default="flatjax",
                 help="'flatjax' (default): glibc malloc set up as flatjax's CLI does "
                      "(flatjax.runtime.tune_malloc); 'default': glibc's defaults")
  p.add_argument("--runtime", choices=("flatjax", "onnx"), default="flatjax",
                 help="'flatjax' (default): the jitted eval step; 'onnx': each model "
                      "exported by flatjax.export.to_onnx, run in onnxruntime (CPU)")
  p.add_argument("--threads", type=int, default=None,
                 help="onnxruntime's intra-op threads (default: every core)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--output", default=None, help="append a JSON line with the results here")
  return p.parse_args(argv)


# ---- gate settings ----------------------------------------------------------

def _top(scores, k: int):
  """0/1 float32 gate keeping the ``k`` largest scores (ties: lower index)."""
  import numpy as np
  gate = np.zeros(len(scores), np.float32)
  gate[np.argsort(-np.asarray(scores), kind="stable")[:k]] = 1.0
  return gate


def _magnitudes(config, params):
  """Per layer head and neuron scores, and hidden-dim scores, from the weights."""
  import numpy as np
  bert = params["bert"] if "bert" in params else params
  heads, neurons = [], []
  for i in range(config.num_hidden_layers):
    layer = bert["encoder"]["layer"][str(i)]
    out = np.asarray(layer["attention"]["output"]["dense"]["kernel"])  # [H*D, d]
    heads.append(np.linalg.norm(
        out.reshape(config.num_attention_heads, config.head_dim * out.shape[1]), axis=1))
    ffn_out = np.asarray(layer["output"]["dense"]["kernel"])  # [F, d]
    neurons.append(np.linalg.norm(ffn_out, axis=1))
  words = np.asarray(bert["embeddings"]["word_embeddings"]["embedding"])  # [V, d]
  return heads, neurons, np.linalg.norm(words, axis=0)


def _head_and_neuron_counts(config, budget: float, hidden: int, n_att: int, n_ffn: int,
                            fraction: float) -> tuple[int, int]:
  """h heads in each of n_att attention blocks and f neurons in each of n_ffn FFN
  blocks of width ``hidden``: h = round(H * fraction) lowered until it fits the
  budget, f takes the rest."""
  H, D, F = config.num_attention_heads, config.head_dim, config.intermediate_size
  h = min(H, max(0, round(H * fraction)))
  while h > 0 and 4 * n_att * hidden * h * D > budget:
    h -= 1
  rest = budget - 4 * n_att * hidden * h * D
  f = min(F, max(0, round(rest / (2 * n_ffn * hidden)))) if n_ffn else 0
  return h, f


def uniform_gates(config, params, target: float) -> dict:
  """Every layer keeps the same number of heads and neurons; blocks and hidden kept."""
  import numpy as np
  from flatjax.sparsity.structured import encoder_params, full_gates
  L, d = config.num_hidden_layers, config.hidden_size
  budget = (1.0 - target) * encoder_params(config)
  h, f = _head_and_neuron_counts(config, budget, d, L, L, 1.0 - target)
  heads, neurons, _ = _magnitudes(config, params)
  gates = full_gates(config)
  gates["head"] = np.stack([_top(heads[i], h) for i in range(L)])
  gates["intermediate"] = np.stack([_top(neurons[i], f) for i in range(L)])
  return gates


def layers_gates(config, params, target: float) -> dict:
  """Whole blocks removed from the upper layers, fewer heads and neurons in the
  rest, narrower hidden size (the rule is in the module docstring)."""
  import numpy as np
  from flatjax.sparsity.structured import encoder_params, full_gates
  L, d = config.num_hidden_layers, config.hidden_size
  H, D, F = config.num_attention_heads, config.head_dim, config.intermediate_size
  keep = 1.0 - target
  budget = keep * encoder_params(config)
  hidden = min(d, max(1, round(d * (1.0 - target / 4))))
  n_att = min(L, max(1, round(L * keep)))
  n_ffn = min(L, max(1, round(L * math.sqrt(keep))))

  def full_width():
    return hidden * (4 * n_att * H * D + 2 * n_ffn * F)

  add_ffn = True
  while budget > full_width() and (n_att < L or n_ffn < L):
    if (add_ffn and n_ffn < L) or n_att == L:
      n_ffn += 1
    else:
      n_att += 1
    add_ffn = not add_ffn
  h, f = _head_and_neuron_counts(config, budget, hidden, n_att, n_ffn, budget / full_width())
  heads, neurons, dims = _magnitudes(config, params)
  gates = full_gates(config)
  gates["mha"] = (np.arange(L) < n_att).astype(np.float32)
  gates["ffn"] = (np.arange(L) < n_ffn).astype(np.float32)
  gates["head"] = np.stack([_top(heads[i], h) for i in range(L)])
  gates["intermediate"] = np.stack([_top(neurons[i], f) for i in range(L)])
  gates["hidden"] = _top(dims, hidden)
  return gates


def unpruned_config(config):
  """The standard BERT a ``prune_model`` config was exported from."""
  if not config.is_structurally_pruned:
    return config
  return dataclasses.replace(
      config, hidden_size=config.pooler_width, attention_head_size=None, layer_num_heads=None,
      layer_intermediate_sizes=None, pruned_attention_layers=(), pruned_ffn_layers=(),
      pooler_size=None)


def describe(config) -> dict:
  """Hidden size and per layer heads / FFN neurons (None for a removed block)."""
  L = config.num_hidden_layers
  return {
      "hidden": config.hidden_size,
      "heads": [None if i in config.pruned_attention_layers else config.heads_in_layer(i)
                for i in range(L)],
      "neurons": [None if i in config.pruned_ffn_layers else config.intermediate_in_layer(i)
                  for i in range(L)],
  }


def _fmt(sizes) -> str:
  return "[" + " ".join("-" if s is None else str(s) for s in sizes) + "]"


def _ort_version() -> str:
  import onnxruntime
  return onnxruntime.__version__


def _runner(args, m, task, jbatch, batch):
  """A function running model ``m`` on the benchmark batch, returning its logits
  as numpy: the jitted eval step, or the model's ONNX export in onnxruntime."""
  import jax
  import numpy as np
  from flatjax.train import steps
  if args.runtime == "flatjax":
    params, step = jax.device_put(m["params"]), jax.jit(steps.make_eval_step(m["module"]))
    return lambda: np.asarray(jax.block_until_ready(step(params, None, jbatch))["logits"])
  import onnxruntime as ort
  from flatjax.export import to_onnx
  options = ort.SessionOptions()
  if args.threads:
    options.intra_op_num_threads = args.threads
  session = ort.InferenceSession(to_onnx(m["params"], m["config"], task).SerializeToString(),
                                 options, providers=["CPUExecutionProvider"])
  feeds = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
  return lambda: session.run(["logits"], feeds)[0]


# ---- main ------------------------------------------------------------------

def main(argv=None):
  args = parse_args(argv)
  tuned = False
  if args.malloc == "flatjax":
    from flatjax.runtime import tune_malloc  # before jax starts its threads
    tuned = tune_malloc()

  import jax
  import numpy as np

  from flatjax.data.tasks import get_task
  from flatjax.models import build_module, from_pretrained
  from flatjax.sparsity.structured import encoder_params, prune_model
  from flatjax import provenance
  from flatjax.models.bert import MODEL_INPUTS

  task = get_task("sst2")
  teacher = from_pretrained(args.model, task)
  config = teacher.config
  full_params = encoder_params(config)
  batch = make_batch(np.random.RandomState(args.seed), args.batch_size, args.length,
                     config.vocab_size)
  jbatch = {k: jax.device_put(batch[k].astype(np.int32)) for k in MODEL_INPUTS}

  # name, kind, target, config, module, params, gates (synthetic only)
  models = [dict(name=f"teacher ({args.model})", kind="teacher", target=0.0, config=config,
                 module=teacher.module, params=teacher.params, gates=None, base=full_params)]
  families = ("uniform", "layers") if args.structure == "both" else (args.structure,)
  makers = {"uniform": uniform_gates, "layers": layers_gates}
  for family in families:
    for s in args.sparsity:
      gates = makers[family](config, teacher.params, s)
      small_config, small_params = prune_model(config, teacher.params, gates)
      models.append(dict(name=f"{family} {s:.0%}", kind=family, target=s, config=small_config,
                         module=build_module(small_config, task), params=small_params,
                         gates=gates, base=full_params))
  for folder in args.models:
    pt = from_pretrained(folder)
    if pt.task is None:  # a bare encoder: time it with the teacher's head
      pt = from_pretrained(folder, task)
    base = unpruned_config(pt.config)
    if dataclasses.replace(base, classifier_dropout=None) != \
        dataclasses.replace(config, classifier_dropout=None):
      print(f"note: {folder} was not exported from {args.model}'s architecture; its sparsity "
            "is against its own unpruned architecture")
    models.append(dict(name=os.path.basename(os.path.normpath(folder)), kind="folder",
                       target=None, config=pt.config, module=pt.module, params=pt.params,
                       gates=None, base=encoder_params(base)))

  for m in models:
    m["encoder_params"] = encoder_params(m["config"])
    m["sparsity"] = 1.0 - m["encoder_params"] / m["base"]
    m["structure"] = describe(m["config"])
    if m["target"] is not None and abs(m["sparsity"] - m["target"]) > SPARSITY_TOLERANCE:
      raise SystemExit(f"{m['name']}: sparsity {m['sparsity']:.4f} misses its target "
                       f"{m['target']} by more than {SPARSITY_TOLERANCE}")
    m["run"] = _runner(args, m, task, jbatch, batch)

  cores = len(os.sched_getaffinity(0))
  runtime = args.runtime if args.runtime == "flatjax" else f"onnxruntime {_ort_version()}"
  print(f"{runtime}; jax {jax.__version__} on {jax.devices()[0]} "
        f"(backend {jax.default_backend()}); {provenance.cpu()['model']}, {cores} cores; "
        f"malloc {args.malloc} (tune_malloc applied: {tuned})")
  print(f"batch {args.batch_size} x {args.length}, {int(batch['attention_mask'].sum())} real "
        f"tokens of {batch['attention_mask'].size}; teacher encoder params {full_params:,}")
  print("structures (hidden; per layer heads, FFN neurons; - = block removed):")
  for m in models:
    st = m["structure"]
    print(f"  {m['name']:24s} hidden {st['hidden']:4d}  heads {_fmt(st['heads'])}  "
          f"neurons {_fmt(st['neurons'])}")

  # ---- correctness: exported == gated teacher --------------------------------
  @jax.jit
  def gated_logits(params, gates, b):
    return teacher.module.apply({"params": params}, *(b[k] for k in MODEL_INPUTS),
                                gates=gates, deterministic=True)["logits"]

  for m in models:
    t0 = time.perf_counter()
    logits = m["run"]()
    m["compile_s"] = time.perf_counter() - t0
    m["max_abs_logit_diff"] = None
    if m["gates"] is not None:
      ref = gated_logits(teacher.params, m["gates"], jbatch)
      diff = float(np.max(np.abs(np.asarray(logits) - np.asarray(ref))))
      m["max_abs_logit_diff"] = diff
      m["max_abs_logit"] = float(np.max(np.abs(np.asarray(ref))))
      if not diff <= LOGIT_TOLERANCE:
        raise SystemExit(f"{m['name']}: exported logits differ from the gated teacher's by "
                         f"{diff:.3g} (> {LOGIT_TOLERANCE}); the export is broken")
  checked = [m for m in models if m["max_abs_logit_diff"] is not None]
  if checked:
    print(f"exported == gated teacher on the batch for {len(checked)} models (max abs logit "
          f"difference {max(m['max_abs_logit_diff'] for m in checked):.2e} <= "
          f"{LOGIT_TOLERANCE:g}; logits up to "
          f"{max(m['max_abs_logit'] for m in checked):.3f} in magnitude)", flush=True)

  # ---- timing -----------------------------------------------------------------
  def call(m):
    t0 = time.perf_counter()
    m["run"]()
    return time.perf_counter() - t0

  n = len(models)
  for _ in range(args.warmup):
    for m in models:
      call(m)
  for m in models:
    m["times"] = []
  for r in range(args.repeats):
    for m in models[r % n:] + models[:r % n]:
      m["times"].append(call(m))
    print(f"  {r + 1:3d}/{args.repeats}: " + "  ".join(
        f"{m['times'][-1] * 1e3:.0f}" for m in models) + " ms", flush=True)

  teacher_s = statistics.median(models[0]["times"])
  rows = []
  print()
  print(f"{'model':24s} {'enc. params':>12s} {'sparsity':>9s} {'ms/batch':>9s} "
        f"{'examples/s':>11s} {'speed-up':>9s}")
  for m in models:
    s = summarize(m["times"])
    row = {"name": m["name"], "kind": m["kind"], "target_sparsity": m["target"],
           "sparsity": m["sparsity"], "encoder_params": m["encoder_params"],
           **m["structure"],
           "pruned_attention_layers": list(m["config"].pruned_attention_layers),
           "pruned_ffn_layers": list(m["config"].pruned_ffn_layers),
           **s, "times_s": m["times"], "examples_per_s": args.batch_size / s["median_s"],
           "speedup": teacher_s / s["median_s"], "compile_s": m["compile_s"],
           "max_abs_logit_diff": m["max_abs_logit_diff"]}
    rows.append(row)
    print(f"{m['name']:24s} {m['encoder_params']:12,d} {m['sparsity']:9.1%} "
          f"{s['median_s'] * 1e3:9.1f} {row['examples_per_s']:11.1f} {row['speedup']:8.2f}x")
  if warning := provenance.contention():
    print(warning)

  if args.output:
    from flatjax import jsonl
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    jsonl.append(args.output, provenance.benchmark_row("cofi_speed", args.output, {
        "runtime": args.runtime, "threads": args.threads,
        "model": args.model, "task": task.name, "batch_size": args.batch_size,
        "length": args.length, "repeats": args.repeats, "warmup": args.warmup,
        "sparsities": args.sparsity, "structure": args.structure, "models": args.models,
        "real_tokens": int(batch["attention_mask"].sum()),
        "device": str(jax.devices()[0]), "backend": jax.default_backend(),
        "malloc": args.malloc, "malloc_tuned": tuned, "rows": rows}))
    print(f"wrote {args.output}")
  return rows


if __name__ == "__main__":
  main()
