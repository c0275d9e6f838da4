"""benchmarks/campaign: the accelerator campaign, end to end on a tiny model (its --smoke
mode), and the numbers it derives (model FLOPs, chance levels) against hand-derived ones."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import _WORDS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.campaign import paper, speed  # noqa: E402
from flatjax.data.tasks import get_task  # noqa: E402


def test_train_flops_of_bert_base_at_32_by_128_by_hand():
  # 6 x (12 layers x (4 x 768^2 + 2 x 768 x 3072) = 84,934,656 matmul weights) x 4096 tokens
  dense = 6 * 84_934_656 * 4096
  # 3 x 12 layers x (Q K^T and probs V: 2 x 2 x 32 x 128^2 x 768 FLOPs)
  attention = 3 * 12 * 4 * 32 * 128 * 128 * 768
  head = 3 * 2 * 32 * (768 * 768 + 768 * 2)  # pooler and 2-label classifier
  assert dense + attention + head == 2_145_449_705_472
  assert speed.train_flops(speed.BERT_BASE, 32, 128) == 2_145_449_705_472


def test_chance_is_the_majority_share_and_two_standard_errors():
  labels = np.array([1] * 70 + [0] * 30)
  c = paper.chance(labels, 2)
  assert c["majority"] == pytest.approx(70.0)
  assert c["margin"] == pytest.approx(200 * math.sqrt(0.7 * 0.3 / 100))
  assert paper.as_digits(np.array([0, 1, 1, 0])) == "0110"


def test_device_label_names_the_accelerator_as_the_rows_scale_does():
  from benchmarks.campaign.__main__ import device_label
  assert device_label("gpu", "NVIDIA H200") == "H200"
  assert device_label("gpu", "NVIDIA H100 80GB HBM3") == "H100 80GB HBM3"
  assert device_label("cpu", "cpu") == "cpu"


def _part_b_for_costs(rows: list[dict], device: str = "gpu:NVIDIA H200 x1"):
  """A PartB with only what its cost estimate reads: the ledger's rows and stamp, and
  the trainers this process has run (none yet)."""
  part = object.__new__(paper.PartB)
  part.ledger = SimpleNamespace(rows={str(i): r for i, r in enumerate(rows)},
                                stamp={"device": device})
  part.trainers = {}
  return part


def test_cost_estimates_steps_at_the_steady_rate_plus_one_compilation_by_hand():
  data = SimpleNamespace(recipe=SimpleNamespace(epochs=2),
                         batcher=lambda seed: SimpleNamespace(num_batches=50),
                         task=get_task("rte"))
  finetune = lambda ms, **kw: {"kind": "finetune", "optimizer": "adam", "steps": 101,
                               "device": "gpu:NVIDIA H200 x1", **kw}
  rows = [finetune(0, train_s=0.8 + 9.0, first_step_s=9.0),   # 100 steps in 0.8 s: 8 ms
          finetune(0, train_s=1.0 + 30.0, first_step_s=30.0),  # 10 ms
          finetune(0, ms_per_step=12.0),                       # recorded before first_step_s
          finetune(0, ms_per_step=500.0, device="gpu:NVIDIA H100 x1"),  # another device
          {"kind": "imp", "optimizer": "adam"}]
  part = _part_b_for_costs(rows)
  assert part.step_ms("adam") == pytest.approx(10.0)  # the median of 8, 10 and 12
  assert part.step_ms("sam") == paper.DEFAULT_STEP_MS["sam"]
  # 2 epochs x 50 batches at 10 ms, 5 s of evaluation, one compilation.
  assert part.cost(data, "adam") == pytest.approx(1.0 + 5.0 + paper.COMPILE_S)
  assert part.cost(data, "adam", runs=3, mask=True) == pytest.approx(
      3 * (1.0 + 5.0) + paper.COMPILE_S)
  # Once this process has run the unmasked Adam step at 20 ms, that rate counts and only
  # a step it has not run (masked, or with a pruner) compiles again.
  trainer = object.__new__(paper.Trainer)
  trainer.ms_per_step, trainer.compiled = {"adam": 20.0}, {paper.step_kind("adam", False, False)}
  part.trainers[paper.trainer_key(data.task)] = trainer
  assert part.cost(data, "adam") == pytest.approx(2.0 + 5.0)
  assert part.cost(data, "adam", pruner=True) == pytest.approx(2.0 + 5.0 + paper.COMPILE_S)


def _write_pairs(folder: Path, header: str, row, n_train: int, n_dev: int, seed: int) -> None:
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
    lines = [header]
    for i in range(n):
      a, b = (" ".join(rng.choice(_WORDS, size=rng.integers(3, 9))) for _ in range(2))
      lines.append(row(i, a, b, int(rng.integers(0, 2))))
    (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
  """Tiny RTE and MRPC folders in the classic GLUE TSV layouts."""
  root = tmp_path_factory.mktemp("glue")
  _write_pairs(root / "RTE", "index\tsentence1\tsentence2\tlabel",
               lambda i, a, b, y: f"{i}\t{a}\t{b}\t{('entailment', 'not_entailment')[y]}",
               48, 24, 0)
  _write_pairs(root / "MRPC", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
               lambda i, a, b, y: f"{y}\t{i}\t{i + 1000}\t{a}\t{b}", 48, 24, 1)
  return root


def _campaign(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "benchmarks.campaign", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tiny_model_dir, glue_dir):
  """``prepare`` from the tiny model and data, then ``run --smoke`` twice."""
  root = tmp_path_factory.mktemp("campaign")
  assets, out = root / "assets", root / "out"
  prep = _campaign("prepare", "--assets", str(assets), "--model", str(tiny_model_dir),
                   "--glue", str(glue_dir), "--tasks", "rte", "mrpc")
  assert prep.returncode == 0, prep.stderr
  first = _campaign("run", "--smoke", "--assets", str(assets), "--out", str(out),
                    "--budget-s", "800")
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  rows_first = (out / "results.jsonl").read_text()
  second = _campaign("run", "--smoke", "--assets", str(assets), "--out", str(out),
                     "--budget-s", "800")
  assert second.returncode == 0, second.stderr[-3000:]
  rows = {r["unit"]: r for r in map(json.loads, rows_first.splitlines())}
  return {"assets": assets, "out": out, "rows": rows, "first": first.stdout,
          "second": second.stdout, "rows_after": (out / "results.jsonl").read_text(),
          "rows_first": rows_first}


def test_prepared_model_is_the_float16_rounding_of_the_original(smoke_run, tiny_model_dir):
  from safetensors.numpy import load_file
  original = load_file(str(tiny_model_dir / "model.safetensors"))
  stored = load_file(str(smoke_run["assets"] / "model" / "model.safetensors"))
  assert stored.keys() == original.keys()
  for k, v in original.items():
    assert stored[k].dtype == np.float16
    np.testing.assert_array_equal(stored[k], v.astype(np.float16))
  for split in ("train.tsv", "dev.tsv"):
    assert (smoke_run["assets"] / "glue" / "RTE" / split).is_file()
  assert "revision" in json.loads((smoke_run["assets"] / "revision.json").read_text())


def test_every_unit_ran_and_none_failed(smoke_run):
  rows, log = smoke_run["rows"], smoke_run["first"]
  assert "FAILED" not in log
  expected = {"env", "a/peak", "a/parity/minilm", "a/parity/tiny", "b/rte/data", "b/mrpc/data"}
  expected |= {f"a/{fw}/{d}/{o}" for fw in ("flatjax", "torch") for d in ("bf16", "fp32")
               for o in ("adam", "sam")}
  expected |= {f"a/eval/{fw}/{d}" for fw in ("flatjax", "torch") for d in ("bf16", "fp32")}
  expected.add("a/profile/flatjax/bf16/adam")
  assert expected <= rows.keys()
  fine = [r for r in rows.values() if r.get("kind") == "finetune"]
  imp = [r for r in rows.values() if r.get("kind") == "imp"]
  # Per task and seed: Adam, and SAM at 0.05 (and 0.02 where 0.05 stayed at chance).
  for task in ("rte", "mrpc"):
    for seed in (0, 1):
      opts = {r["optimizer"] for r in fine if r["task"] == task and r["seed"] == seed}
      assert opts == {"adam", "sam"}
      assert {r["seed"] for r in imp if r["task"] == task} == {0, 1}
  assert all(r["revision"] and r["scale"] == "smoke (tiny)" for r in rows.values())


def test_flax_matches_pytorch_in_the_parity_units(smoke_run):
  # The tiny random BERT and the (float16-stored) tiny model, each against PyTorch's BertModel.
  for unit in ("a/parity/tiny", "a/parity/minilm"):
    row = smoke_run["rows"][unit]
    assert row["highest"]["within"] and row["highest"]["last_hidden_state"] <= 1e-4, row


def test_profile_unit_reads_the_steps_ops_from_its_trace(smoke_run):
  row = smoke_run["rows"]["a/profile/flatjax/bf16/adam"]
  assert row["backend"] == "cpu" and row["steps"] == 5
  assert 0 < row["busy_ms"] <= row["span_ms"] and row["busy_share"] <= 1
  # The tiny BERT's step: matrix products, dropout masks, and an Adam update of every
  # parameter, which runs after the gradient (outside the model's JVP).
  assert row["kind_ms"]["matmul"] > 0 and row["kind_ms"]["dropout"] > 0
  assert {"forward", "backward", "update"} <= row["phase_ms"].keys()
  assert row["xla_flops"] > 0 and row["model_tflop"] > 0
  assert len(row["top"]) == 15 and all(op["ms"] > 0 for op in row["top"])
  # The kept trace is the one read: the same op events come out of it again.
  import gzip
  import jax
  from benchmarks import xla_trace
  raw = gzip.decompress((smoke_run["out"] / "profile_bf16_adam.xplane.pb.gz").read_bytes())
  events, _ = xla_trace.device_ops(jax.profiler.ProfileData.from_serialized_xspace(raw),
                                   {op["name"]: None for op in row["top"]})
  top = row["top"][0]
  assert sum(e.end_ns - e.start_ns for e in events if e.name == top["name"]) == pytest.approx(
      top["ms"] * 1e6 * row["steps"], rel=1e-6)


def test_finetune_rows_hold_predictions_and_compressions(smoke_run):
  rows = smoke_run["rows"]
  data = rows["b/rte/data"]
  assert data["dev_examples"] == 24 and len(data["labels"]) == 24
  labels = np.frombuffer(data["labels"].encode(), np.uint8) - 48
  for r in (r for r in rows.values() if r.get("kind") == "finetune" and r["task"] == "rte"):
    preds = {k: np.frombuffer(v.encode(), np.uint8) - 48 for k, v in r["preds"].items()}
    assert set(preds) == {"dense", "int8", "oneshot0.6"}
    # The recorded scores are the accuracies of the recorded predictions.
    assert r["dev"]["accuracy"] == pytest.approx(100 * np.mean(preds["dense"] == labels))
    assert r["int8"]["accuracy"] == pytest.approx(100 * np.mean(preds["int8"] == labels))
    assert r["oneshot"][-1]["dev"]["accuracy"] == pytest.approx(
        100 * np.mean(preds["oneshot0.6"] == labels))
    assert [p["target"] for p in r["oneshot"]] == [0.0, 0.3, 0.6]
    for p in r["oneshot"]:
      assert p["sparsity"] == pytest.approx(p["target"], abs=1e-3)
    assert r["steps"] == 2 and len(r["history"]) == 1  # 48 examples, batch 32, 1 epoch
    assert 0 < r["first_step_s"] < r["train_s"]


def test_imp_prunes_to_the_reference_sparsity(smoke_run):
  for r in (r for r in smoke_run["rows"].values() if r.get("kind") == "imp"):
    assert r["rounds"][-1]["sparsity"] == pytest.approx(get_task(r["task"]).reference_sparsity,
                                                        abs=1e-3)
    assert r["source"] in smoke_run["rows"]


def test_movement_pruning_reaches_its_sparsity_with_both_optimizers(smoke_run):
  rows = [r for r in smoke_run["rows"].values() if r.get("kind") == "movement"]
  assert {(r["optimizer"], r["seed"]) for r in rows} == {(o, s) for o in ("adam", "sam")
                                                         for s in (0, 1)}
  for r in rows:
    assert r["sparsity"] == pytest.approx(0.6, abs=1e-3)
    assert len(r["preds"]["movement"]) == 24


def test_a_rerun_on_a_fresh_machine_trains_imp_sources_again(smoke_run, tmp_path):
  # A fresh machine has the committed results.jsonl but none of the fine-tuned models.
  out = tmp_path / "out"
  out.mkdir()
  kept = [line for line in smoke_run["rows_first"].splitlines()
          if json.loads(line).get("kind") != "imp"]
  (out / "results.jsonl").write_text("\n".join(kept) + "\n")
  result = _campaign("run", "--smoke", "--parts", "b", "--assets", str(smoke_run["assets"]),
                     "--out", str(out), "--budget-s", "800")
  assert result.returncode == 0 and "FAILED" not in result.stdout, result.stdout[-3000:]
  rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
  imp = [r for r in rows if r.get("kind") == "imp"]
  assert len(imp) == 8 and all(r["source_retrained"] for r in imp)
  assert sum(r.get("kind") == "finetune" for r in rows) == sum(
      json.loads(line).get("kind") == "finetune" for line in kept)  # none run again as units


def test_a_second_run_skips_every_recorded_unit(smoke_run):
  assert ": start" not in smoke_run["second"]
  assert smoke_run["rows_after"] == smoke_run["rows_first"]


def test_summarize_writes_tables_and_the_report_section(smoke_run, tmp_path):
  raw = smoke_run["out"] / "results.jsonl"
  result = _campaign("summarize", str(raw), "--speed-md", str(tmp_path / "speed.md"),
                     "--experiments", str(tmp_path / "results"))
  assert result.returncode == 0, result.stderr
  speed_md = (tmp_path / "speed.md").read_text()
  assert "| train step, SAM (rho 0.05) |" in speed_md
  assert "Where flatjax's bf16 Adam step spends its time (cpu" in speed_md
  assert "| matmul |" in speed_md and "| backward |" in speed_md and "| forward |" in speed_md
  folder = tmp_path / "results" / "h200"
  readme = (folder / "README.md").read_text()
  assert "Generated by `python -m benchmarks.campaign summarize" in readme
  assert "| rte (accuracy, 60%) | adam | 0, 1 |" in readme, readme
  assert (folder / "h200.png").stat().st_size > 0
  # Each model's dense, int8 and one-shot 60% rows carry its dev predictions, with the
  # ledger's revision, so that the report can pair them.
  ledger = [json.loads(line) for line in raw.read_text().splitlines()]
  rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
  fine = [r for r in ledger if r.get("kind") == "finetune"]
  sam_lr = {(r["task"], r["lr"]) for r in fine if r["optimizer"] == "sam"}
  fine = [r for r in fine if (r["task"], r["lr"]) in sam_lr]   # Adam's sweep left out
  dense = [r for r in rows if r["compression"] == "none"]
  assert len(dense) == len(fine) and all(len(r["predictions"]) == len(r["labels"])
                                         for r in dense)
  assert {r["revision"] for r in rows} == {fine[0]["revision"][:7]
                                           + ("-dirty" if fine[0]["dirty"] else "")}
  claimed = [r for r in rows if r["compression"] == "oneshot" and r["sparsity"] == 0.6]
  assert claimed and all("predictions" in r and "base" in r for r in claimed)


def test_summarize_refuses_rows_from_another_accelerator_for_the_h200_item(smoke_run,
                                                                           tmp_path):
  rows = [json.loads(line) for line in smoke_run["rows_first"].splitlines()]
  for r in rows:
    if r.get("kind") == "finetune":
      r["scale"] = "H100 80GB HBM3, full training set"
  raw = tmp_path / "results.jsonl"
  raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
  line = _one_line_exit_2(_campaign("summarize", str(raw), "--speed-md",
                                    str(tmp_path / "speed.md"), "--experiments",
                                    str(tmp_path / "results")))
  assert "H100 80GB HBM3, full training set" in line and "h200" in line
  assert not (tmp_path / "results" / "h200").exists()


def _one_line_exit_2(result: subprocess.CompletedProcess) -> str:
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
  return lines[0]


def test_prepare_refuses_missing_inputs_before_writing(tmp_path, tiny_model_dir, glue_dir):
  assets = tmp_path / "assets"
  # SST-2 is not in the fixture's folder: nothing may be written, the model included.
  line = _one_line_exit_2(_campaign("prepare", "--assets", str(assets), "--model",
                                    str(tiny_model_dir), "--glue", str(glue_dir)))
  assert "SST-2" in line and not assets.exists()
  line = _one_line_exit_2(_campaign("prepare", "--assets", str(assets), "--model",
                                    str(tmp_path / "no-model"), "--glue", str(glue_dir),
                                    "--tasks", "rte"))
  assert "no-model" in line and not assets.exists()
  assert _campaign("prepare", "--tasks", "cola").returncode == 2  # not a Part B task


def test_run_and_summarize_refuse_bad_input(tmp_path):
  line = _one_line_exit_2(_campaign("run", "--assets", str(tmp_path), "--out",
                                    str(tmp_path / "out")))
  assert "prepare" in line and not (tmp_path / "out").exists()
  assert _campaign("run", "--out", str(tmp_path / "out"), "--parts", "c").returncode == 2
  line = _one_line_exit_2(_campaign("summarize", str(tmp_path / "none.jsonl"), "--speed-md",
                                    str(tmp_path / "speed.md"), "--experiments",
                                    str(tmp_path / "results")))
  assert "none.jsonl" in line
  assert not (tmp_path / "speed.md").exists() and not (tmp_path / "results").exists()
