"""Part A: flatjax's train step against PyTorch's on bert-base's architecture.

Random weights (no download): PyTorch's ``BertForSequenceClassification`` is built from
bert-base's config with seed 0 and saved, and flatjax loads that folder, so both time the
same model on the same batch (:func:`benchmarks.step_time.make_batch`: random ids, rows
padded to random lengths, two segments), dropout on, Adam at lr 2e-5:

* flatjax: ``jax.jit(make_train_step(make_loss_fn(module, task), tx), donate_argnums=0)``
  with the registry's ``adam`` / ``sam`` (rho 0.05); ``fp32``, or ``bf16`` compute with
  float32 params (``from_pretrained(..., dtype=bfloat16)``).
* PyTorch eager: ``zero_grad``, forward, ``backward``, ``Adam.step`` (fused on CUDA);
  ``bf16`` under ``torch.autocast``. SAM is the same two-pass update written with
  ``torch._foreach_*``. ``torch.compile`` of the model for the bf16 Adam step.

Each timing is the median over ``reps`` runs of ``steps_per_rep`` back-to-back steps,
synchronised at the end of each run, after ``warmup`` steps. Model FLOPs count the
matmuls (``6 x params x tokens`` for the dense layers, plus attention's scores and
mixing), as MFU is usually counted; SAM's step is two forward-backward passes.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64}
#: The H200's dense bf16 matmul rate measured on this workplace's machines (TFLOP/s).
H200_BF16_TFLOPS = 790.0
SAM_RHO = 0.05


@dataclasses.dataclass(frozen=True)
class SpeedSettings:
  architecture: dict
  name: str = "bert-base"
  batch_size: int = 32
  length: int = 128
  warmup: int = 3
  reps: int = 5
  steps_per_rep: int = 10
  torch_compile: bool = True


FULL = SpeedSettings(BERT_BASE)
SMOKE = SpeedSettings(TINY, name="tiny", batch_size=4, length=16, warmup=1, reps=2,
                      steps_per_rep=2, torch_compile=False)


def train_flops(arch: dict, batch: int, length: int, num_labels: int = 2) -> float:
  """Model FLOPs of one forward + backward pass (3x the forward's matmuls)."""
  d, f, layers = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
  tokens = batch * length
  dense = 2 * tokens * (4 * d * d + 2 * d * f)
  attention = 2 * 2 * batch * length * length * d       # Q K^T and probs V
  head = 2 * batch * (d * d + d * num_labels)           # pooler and classifier
  return 3.0 * (layers * (dense + attention) + head)


def time_steps(run: Callable[[int], None], warmup: int, reps: int, n: int) -> dict:
  """``run(k)`` does k steps and waits for them; per-step milliseconds over ``reps``."""
  run(warmup)
  per_step = []
  for _ in range(reps):
    t0 = time.perf_counter()
    run(n)
    per_step.append((time.perf_counter() - t0) / n * 1e3)
  return {"median_ms": statistics.median(per_step), "min_ms": min(per_step),
          "mean_ms": statistics.fmean(per_step), "reps": reps, "steps_per_rep": n}


class Bench:
  """The shared pieces of Part A: the reference folder, the batch, the device."""

  def __init__(self, settings: SpeedSettings, workdir: Path):
    import torch
    self.settings = settings
    self.workdir = Path(workdir)
    self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    self._model_dir: Path | None = None

  @property
  def model_dir(self) -> Path:
    """bert-base's architecture, random weights (seed 0), saved by transformers."""
    if self._model_dir is None:
      import torch
      import transformers
      out = self.workdir / f"{self.settings.name}-random"
      if not (out / "config.json").exists():
        torch.manual_seed(0)
        config = transformers.BertConfig(**self.settings.architecture, num_labels=2)
        transformers.BertForSequenceClassification(config).save_pretrained(str(out))
      self._model_dir = out
    return self._model_dir

  def batch(self, vocab_size: int = 30522) -> dict:
    from benchmarks.step_time import make_batch
    s = self.settings
    return make_batch(np.random.RandomState(0), s.batch_size, s.length, vocab_size)

  def flops(self) -> float:
    s = self.settings
    return train_flops(s.architecture, s.batch_size, s.length)

  def step_flops(self, optimizer: str) -> float:
    """A train step's model FLOPs: SAM's is two forward-backward passes."""
    return self.flops() * (2 if optimizer == "sam" else 1)

  def rates(self, flops: float, median_ms: float, peak_tflops: float | None) -> dict:
    achieved = flops / (median_ms * 1e-3) / 1e12
    out = {"model_tflop": flops / 1e12, "tflops": achieved,
           "mfu_vs_790": achieved / H200_BF16_TFLOPS}
    if peak_tflops:
      out["mfu_vs_measured_peak"] = achieved / peak_tflops
    return out

  def timing(self, run: Callable[[int], None]) -> dict:
    s = self.settings
    return time_steps(run, s.warmup, s.reps, s.steps_per_rep)


def matmul_peak(device) -> dict:
  """bf16 8192^3 matmul rate through PyTorch (mean of 10 after 3 warm-ups); CUDA only."""
  import torch
  if device.type != "cuda":
    return {"peak_tflops": None, "why": "no CUDA device"}
  a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
  b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
  for _ in range(3):
    a @ b
  torch.cuda.synchronize()
  t0 = time.perf_counter()
  for _ in range(10):
    a @ b
  torch.cuda.synchronize()
  seconds = (time.perf_counter() - t0) / 10
  return {"peak_tflops": 2 * 8192 ** 3 / seconds / 1e12}


def _flatjax_step(bench: Bench, dtype: str, optimizer: str):
  """flatjax's jitted train step on the bench's batch, compiled: ``(compiled, run, trace_s,
  compile_s)``, where ``run(n)`` takes n steps from the state it holds and waits for them."""
  import jax
  import jax.numpy as jnp
  from flatjax.data.tasks import get_task
  from flatjax.models import from_pretrained
  from flatjax.optim import OptimizerConfig, make_optimizer
  from flatjax.train import losses, state as train_state, steps
  task = get_task("sst2")
  pre = from_pretrained(bench.model_dir, task, dtype=jnp.bfloat16 if dtype == "bf16"
                        else jnp.float32)
  settings = {"rho": SAM_RHO} if optimizer == "sam" else {}
  tx = make_optimizer(OptimizerConfig(optimizer, 2e-5, settings=settings), 100_000)
  state = train_state.create(pre.params, tx, 0)
  batch = {k: jnp.asarray(v, jnp.int32) for k, v in bench.batch().items()}
  batch["example_weight"] = jnp.ones(bench.settings.batch_size, jnp.float32)
  step = jax.jit(steps.make_train_step(losses.make_loss_fn(pre.module, task), tx),
                 donate_argnums=0)
  t0 = time.perf_counter()
  lowered = step.lower(state, batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t1

  def run(n):
    nonlocal state
    for _ in range(n):
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
  return compiled, run, t1 - t0, compile_s


def flatjax_train(bench: Bench, dtype: str, optimizer: str, peak: float | None) -> dict:
  """flatjax's jitted train step: trace and compile times, then per-step time."""
  _, run, trace_s, compile_s = _flatjax_step(bench, dtype, optimizer)
  timing = bench.timing(run)
  flops = bench.step_flops(optimizer)
  return {"framework": "flatjax", "dtype": dtype, "optimizer": optimizer,
          "trace_s": trace_s, "compile_s": compile_s, **timing,
          **bench.rates(flops, timing["median_ms"], peak)}


def flatjax_profile(bench: Bench, dtype: str, optimizer: str, keep: Path | None = None,
                    steps: int = 5) -> dict:
  """Where flatjax's train step spends its time on the device: ``steps`` steps run back to
  back under ``jax.profiler`` (after 2 untraced), summed by :mod:`benchmarks.xla_trace`
  (device span and busy time per step, op time by kind, the slowest ops), with XLA's own
  count of the step's FLOPs and bytes. ``keep``: where to write the raw ``.xplane.pb``,
  gzipped (for xprof or ``jax.profiler.ProfileData`` elsewhere)."""
  import gzip
  import shutil
  import tempfile
  import jax
  from benchmarks import xla_trace
  compiled, run, _, _ = _flatjax_step(bench, dtype, optimizer)
  ops = xla_trace.hlo_ops(compiled.as_text())
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  run(2)
  with tempfile.TemporaryDirectory() as folder:
    t0 = time.perf_counter()
    with jax.profiler.trace(folder):
      run(steps)
    traced_ms = (time.perf_counter() - t0) / steps * 1e3
    path = xla_trace.trace_file(folder)
    if keep is not None:
      Path(keep).parent.mkdir(parents=True, exist_ok=True)
      with open(path, "rb") as src, gzip.open(keep, "wb") as dst:
        shutil.copyfileobj(src, dst)
    events, backend = xla_trace.device_ops(jax.profiler.ProfileData.from_file(path), ops)
  if backend != jax.default_backend():
    raise RuntimeError(f"the trace holds no {jax.default_backend()} plane: the profiler "
                       "recorded no device activity (CUPTI not loadable?)")
  flops = bench.step_flops(optimizer)
  return {"framework": "flatjax", "dtype": dtype, "optimizer": optimizer, "backend": backend,
          "traced_ms": traced_ms, "xla_flops": cost.get("flops"),
          "xla_bytes": cost.get("bytes accessed"), "model_tflop": flops / 1e12,
          **xla_trace.summarize(events, ops, steps, matmul_flops=flops)}


def _torch_model(bench: Bench, train: bool):
  import torch
  import transformers
  model = transformers.BertForSequenceClassification.from_pretrained(
      str(bench.model_dir), dtype=torch.float32)
  model = model.to(bench.device)
  return model.train() if train else model.eval()


def _torch_batch(bench: Bench) -> dict:
  import torch
  return {k: torch.from_numpy(v).to(bench.device) for k, v in bench.batch().items()}


def _sync(bench: Bench) -> None:
  import torch
  if bench.device.type == "cuda":
    torch.cuda.synchronize()


def torch_train_step(model, batch: dict, optimizer: str, dtype: str, device):
  """One PyTorch step: Adam, or SAM (rho 0.05) on Adam, eager or autocast bf16."""
  import torch
  opt = torch.optim.Adam(model.parameters(), lr=2e-5, fused=device.type == "cuda")
  params = [p for p in model.parameters() if p.requires_grad]

  def loss_backward():
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
      loss = model(**batch).loss
    loss.backward()

  def adam():
    opt.zero_grad(set_to_none=True)
    loss_backward()
    opt.step()

  def sam():
    opt.zero_grad(set_to_none=True)
    loss_backward()
    grads = [p.grad for p in params]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    e = torch._foreach_mul(grads, SAM_RHO / (norm + 1e-12))
    with torch.no_grad():
      torch._foreach_add_(params, e)
    opt.zero_grad(set_to_none=True)
    loss_backward()
    with torch.no_grad():
      torch._foreach_sub_(params, e)
    opt.step()
  return sam if optimizer == "sam" else adam


def torch_train(bench: Bench, dtype: str, optimizer: str, peak: float | None,
                compile_model: bool = False) -> dict:
  """PyTorch's step (eager, or ``torch.compile``d: the first step's time is the compile)."""
  import torch
  model = _torch_model(bench, train=True)
  if compile_model:
    model = torch.compile(model)
  step = torch_train_step(model, _torch_batch(bench), optimizer, dtype, bench.device)
  t0 = time.perf_counter()
  step()
  _sync(bench)
  first_s = time.perf_counter() - t0

  def run(n):
    for _ in range(n):
      step()
    _sync(bench)
  timing = bench.timing(run)
  flops = bench.step_flops(optimizer)
  return {"framework": "torch.compile" if compile_model else "torch", "dtype": dtype,
          "optimizer": optimizer, "first_step_s": first_s, "torch": torch.__version__,
          **timing, **bench.rates(flops, timing["median_ms"], peak)}


def flatjax_eval(bench: Bench, dtype: str, peak: float | None) -> dict:
  """flatjax's jitted deterministic forward (the eval step) on the same batch."""
  import jax
  import jax.numpy as jnp
  from flatjax.models import from_pretrained
  from flatjax.train import steps
  pre = from_pretrained(bench.model_dir, "sst2",
                        dtype=jnp.bfloat16 if dtype == "bf16" else jnp.float32)
  batch = {k: jnp.asarray(v, jnp.int32) for k, v in bench.batch().items() if k != "labels"}
  step = jax.jit(steps.make_eval_step(pre.module))
  t0 = time.perf_counter()
  compiled = step.lower(pre.params, None, batch).compile()
  compile_s = time.perf_counter() - t0

  def run(n):
    for _ in range(n):
      out = compiled(pre.params, None, batch)
    jax.block_until_ready(out)
  timing = bench.timing(run)
  return {"framework": "flatjax", "dtype": dtype, "optimizer": "eval", "compile_s": compile_s,
          **timing, **bench.rates(bench.flops() / 3, timing["median_ms"], peak)}


def torch_eval(bench: Bench, dtype: str, peak: float | None) -> dict:
  """PyTorch's forward in ``inference_mode`` (autocast bf16 for ``bf16``)."""
  import torch
  model = _torch_model(bench, train=False)
  batch = {k: v for k, v in _torch_batch(bench).items() if k != "labels"}

  def run(n):
    with torch.inference_mode(), torch.autocast(bench.device.type, dtype=torch.bfloat16,
                                                enabled=dtype == "bf16"):
      for _ in range(n):
        model(**batch)
    _sync(bench)
  timing = bench.timing(run)
  return {"framework": "torch", "dtype": dtype, "optimizer": "eval", **timing,
          **bench.rates(bench.flops() / 3, timing["median_ms"], peak)}


def _train_and_eval_units(ledger, bench: Bench, dtype: str, peak: float | None) -> None:
  """flatjax's and PyTorch's train steps (Adam, SAM) and eval forwards in ``dtype``."""
  for optimizer in ("adam", "sam"):
    ledger.run(f"a/flatjax/{dtype}/{optimizer}",
               lambda: flatjax_train(bench, dtype, optimizer, peak), 40)
    ledger.run(f"a/torch/{dtype}/{optimizer}",
               lambda: torch_train(bench, dtype, optimizer, peak), 15)
  ledger.run(f"a/eval/flatjax/{dtype}", lambda: flatjax_eval(bench, dtype, peak), 20)
  ledger.run(f"a/eval/torch/{dtype}", lambda: torch_eval(bench, dtype, peak), 10)


def run_core(ledger, bench: Bench, minilm_dir: Path) -> float | None:
  """Part A's targets first: the peak rate, parity, and the bf16 steps (flatjax and
  PyTorch eager, Adam and SAM) and eval forwards. Returns the measured peak (TFLOP/s)."""
  from benchmarks.campaign import parity
  s = bench.settings
  peak_row = ledger.run("a/peak", lambda: matmul_peak(bench.device), 10)
  peak = (peak_row or {}).get("peak_tflops")
  ledger.run("a/parity/minilm", lambda: parity.compare(minilm_dir, bench.batch(), bench.device),
             20)
  ledger.run(f"a/parity/{s.name}",
             lambda: parity.compare(bench.model_dir, bench.batch(), bench.device), 20)
  _train_and_eval_units(ledger, bench, "bf16", peak)
  return peak


def run_extras(ledger, bench: Bench, peak: float | None) -> None:
  """The rest of Part A: float32 steps and forwards, ``torch.compile`` (CUDA only), then a
  profile of flatjax's bf16 Adam step."""
  _train_and_eval_units(ledger, bench, "fp32", peak)
  if bench.settings.torch_compile and bench.device.type == "cuda":
    ledger.run("a/torch.compile/bf16/adam",
               lambda: torch_train(bench, "bf16", "adam", peak, compile_model=True), 120)
  ledger.run("a/profile/flatjax/bf16/adam", lambda: flatjax_profile(
      bench, "bf16", "adam", keep=ledger.out / "profile_bf16_adam.xplane.pb.gz"), 60)
