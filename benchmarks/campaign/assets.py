"""The one folder the campaign reads, prepared beforehand on a machine that has the data.

    python -m benchmarks.campaign prepare --assets .device_assets

writes (about 52 MB for MiniLM and the three GLUE tasks)::

  model/          config.json, tokenizer files, model.safetensors in float16 (half the
                  bytes; flatjax casts float tensors back to float32 when it loads them)
  glue/RTE/, glue/MRPC/, glue/SST-2/   train.tsv and dev.tsv, copied as they are
  revision.json   flatjax's git revision and dirty flag (the device gets no .git)
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

def git_revision(repo: Path) -> dict:
  """``{"revision": sha, "dirty": bool}`` of ``repo``; ``"unknown"`` outside a checkout."""
  def git(*args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout.strip()
  try:
    return {"revision": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
  except (OSError, subprocess.CalledProcessError):
    return {"revision": "unknown", "dirty": None}


def write_float16_model(model_dir: Path, out: Path) -> Path:
  """``model_dir`` (a Hugging Face BERT folder) with its float tensors stored as float16."""
  from safetensors.numpy import load_file, save_file
  from flatjax.models.pretrained import TOKENIZER_FILES
  out.mkdir(parents=True, exist_ok=True)
  tensors = load_file(str(model_dir / "model.safetensors"))
  half = {k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in tensors.items()}
  save_file(half, str(out / "model.safetensors"), metadata={"format": "pt"})
  for name in ("config.json", *TOKENIZER_FILES):
    if (model_dir / name).is_file():
      shutil.copyfile(model_dir / name, out / name)
  return out


def _sources(glue: Path, tasks: tuple[str, ...]) -> dict[Path, Path]:
  """Each TSV to copy -> its place under the assets folder; every one must exist."""
  from flatjax.data.tasks import get_task
  from flatjax.errors import FlatjaxInputError
  files = {Path(glue) / get_task(t).glue_folder / s: Path("glue") / get_task(t).glue_folder / s
           for t in tasks for s in ("train.tsv", "dev.tsv")}
  missing = [str(f) for f in files if not f.is_file()]
  if missing:
    raise FlatjaxInputError(f"missing GLUE file(s): {', '.join(missing)}")
  return files


def prepare(assets: Path, model: str, glue: Path, tasks: tuple[str, ...], repo: Path) -> Path:
  """Writes the folder the campaign reads (see the module docstring); returns it.
  Every input is checked before anything is written."""
  from flatjax.models.pretrained import resolve_model_dir, read_hf_config
  assets, model_dir = Path(assets), resolve_model_dir(model)
  read_hf_config(model_dir)
  files = _sources(glue, tasks)
  write_float16_model(model_dir, assets / "model")
  for src, rel in files.items():
    (assets / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, assets / rel)
  (assets / "revision.json").write_text(json.dumps(git_revision(repo)) + "\n")
  return assets


def revision(assets: Path, repo: Path) -> dict:
  """The code's revision: what ``prepare`` recorded, else the checkout's.

  ``prepare`` runs where the commits are, just before the folder travels; the device's
  copy of the tree may carry a ``.git`` of another commit (the H200 run of 2878a02 found
  the session's starting commit there), so the checkout's answer comes second.
  """
  path = Path(assets) / "revision.json"
  return json.loads(path.read_text()) if path.exists() else git_revision(repo)


def size_mb(folder: Path) -> float:
  return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6
