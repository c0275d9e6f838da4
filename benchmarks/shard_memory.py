"""Bytes of params plus optimizer state per device, on each mesh, against one device.

``python benchmarks/shard_memory.py [--model minilm] [--optimizer adam] [--devices 8]``

Builds the train state of ``--model`` (params, the optimizer's state, step
and key; the ``sst2`` head) with ``--optimizer`` from flatjax's registry,
places it on each mesh with ``flatjax.parallel.shard_state`` (the sharding
rules of ``flatjax.parallel.rules``) and counts the bytes of the shards each
device holds (``flatjax.parallel.bytes_per_device``). Prints one row per mesh:
the largest per-device figure, and its ratio to the whole state on one
device. Data parallelism replicates the state (ratio 1); model parallelism
over M devices splits the encoder kernels and word embeddings M ways, and the
replicated rest (LayerNorms, biases, position embeddings, pooler, head) sets
how close the ratio comes to 1/M.

On a machine with one CPU it fakes ``--devices`` host devices
(``--xla_force_host_platform_device_count``): memory is counted, not measured,
so the figures are exact for any backend. ``--output`` appends JSON lines.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="minilm",
                 help="anything from_pretrained takes, or 'bert-base-shapes' (BERT-base's "
                      "architecture, randomly initialised: the bytes are the same)")
  p.add_argument("--optimizer", default="adam")
  p.add_argument("--devices", type=int, default=8)
  p.add_argument("--meshes", default="data=8;data=4,model=2;data=2,model=4;model=2;model=8",
                 help="';'-separated mesh specs for --devices devices")
  p.add_argument("--output", default=None)
  args = p.parse_args()
  if "jax" not in sys.modules:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}")
  import jax
  from flatjax import parallel
  from flatjax.models import from_pretrained
  from flatjax.optim import OptimizerConfig, make_optimizer
  from flatjax.train import state as state_lib

  if args.model == "bert-base-shapes":
    from flatjax.data.tasks import get_task
    from flatjax.models import BertConfig, build_module, init_params
    weights = init_params(build_module(BertConfig(), get_task("sst2")), seed=0)
  else:
    weights = from_pretrained(args.model, "sst2").params
  tx = make_optimizer(OptimizerConfig(args.optimizer, learning_rate=2e-5), total_steps=1000)
  state = state_lib.create(weights, tx, seed=0)
  one = sum(x.nbytes for x in jax.tree.leaves(state))
  params = sum(x.nbytes for x in jax.tree.leaves(weights))
  devices = jax.devices()[:args.devices]
  print(f"{args.model}, {args.optimizer}: params {params / 2**20:.1f} MiB, params + optimizer "
        f"state {one / 2**20:.1f} MiB on one device; {len(devices)} "
        f"{devices[0].platform} devices")
  print(f"{'mesh':<18} {'MiB per device (max)':>21} {'ratio':>7} {'1/model':>8}")
  rows = []
  for spec in args.meshes.split(";"):
    mesh = parallel.make_mesh(spec, devices)
    sharded, _ = parallel.shard_state(state, weights, mesh)
    per_device = parallel.bytes_per_device(sharded)
    worst = max(per_device.values())
    row = {"model": args.model, "optimizer": args.optimizer, "mesh": spec,
           "devices": len(devices), "one_device_bytes": one, "max_bytes_per_device": worst,
           "ratio": worst / one, "model_axis": mesh.shape["model"]}
    rows.append(row)
    print(f"{spec:<18} {worst / 2**20:>21.1f} {worst / one:>7.3f} "
          f"{1 / mesh.shape['model']:>8.3f}")
    del sharded
  if args.output:
    from flatjax import jsonl, provenance
    for row in rows:  # one line per mesh, each saying what made it
      jsonl.append(args.output, provenance.benchmark_row("shard_memory", args.output, row))


if __name__ == "__main__":
  main()
