"""experiments/chance_levels.py's SQuAD position prior, on hand-made questions whose F1 is
worked out by hand below."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chance_levels():
  spec = importlib.util.spec_from_file_location("chance_levels",
                                                ROOT / "experiments" / "chance_levels.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _question(context: str, answer: str) -> dict:
  return {"id": answer, "title": "t", "context": context, "question": "?",
          "answers": {"text": [answer], "answer_start": [context.index(answer)]}}


def test_first_words(chance_levels):
  assert chance_levels.first_words(_question("a b  c d", "c"), 3) == "a b c"


def test_position_prior_fits_k_on_train_and_scores_dev(chance_levels):
  # Both training answers are the context's first two words: k = 2 gives F1 1 on each;
  # k = 1 gives 2/3 (P 1, R 1/2), k = 3 gives 0.8 (P 2/3, R 1).
  train = [_question("Paris France is big", "Paris France"),
           _question("Blue whales swim far", "Blue whales")]
  # dev: "Rome Italy" exact (F1 1, EM 1); "old" against "Rome old": P 1/2, R 1 -> F1 2/3.
  dev = [_question("Rome Italy was old", "Rome Italy"), _question("Rome old wall", "old")]
  prior = chance_levels.squad_position_prior(train, dev)
  assert prior["k"] == 2 and prior["examples"] == 2
  assert prior["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
  assert prior["exact_match"] == pytest.approx(50.0)
  # two standard errors of the per-question F1 (1, 2/3): population std 1/6, n 2
  assert prior["margin"] == pytest.approx(200 * (1 / 6) / 2 ** 0.5)
