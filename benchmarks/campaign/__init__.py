"""flatjax on one accelerator, in one command: speed against PyTorch and the paper at full data.

``python -m benchmarks.campaign run --assets DIR --out DIR`` runs, in order:

* Part A (:mod:`.speed`): bert-base's architecture with random weights, batch 32 x 128;
  flatjax's train step (fp32, and bf16 compute with fp32 params) against PyTorch eager
  (fp32, and ``torch.autocast`` bf16) and ``torch.compile``, with Adam and with SAM; the
  eval forward; compile times; model FLOP utilisation; the Flax BERT's parity with
  PyTorch's on the same device (:mod:`.parity`); and a profile of the bf16 Adam step
  (``benchmarks.xla_trace``).
* Part B (:mod:`.paper`): MiniLM fine-tuned with Adam and SAM on the full RTE, MRPC and
  SST-2 training sets with the paper's recipe, 3 seeds; each model's int8 drop and
  one-shot curve; then IMP with rewinding.

It reads only the folder ``prepare`` made (:mod:`.assets`), so the machine needs no
network; it records each finished unit in ``DIR/results.jsonl`` (:mod:`.ledger`) so a
rerun skips it, and stops starting units when its time budget runs out. ``--smoke``
runs the same code on a tiny model in seconds on a CPU.
"""
