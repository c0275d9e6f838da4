"""Short command-line forms: each rewritten to the dotted key it stands for."""

import dataclasses

import pytest

from flatjax import flags
from flatjax.errors import FlatjaxInputError


@dataclasses.dataclass
class _Data:
  task: str
  max_length: int | None = None


@dataclasses.dataclass
class _Run:
  output: str
  batch_size: int = 32
  progress: bool = True


@dataclasses.dataclass
class _Grid:
  batch_size: int = 8
  masks: dict[str, str] = dataclasses.field(default_factory=dict)
  optimizers: tuple[str, ...] = ("adam", "sam")


def _forms(own=None):
  keys = {**flags.section_keys(_Data, "data"), **flags.section_keys(_Run, "run"),
          **flags.section_keys(_Grid, "grid"), "optimizer.settings": flags.DICT}
  return flags.ShortForms(keys, {"--lr": "optimizer.learning_rate", "--mask": "grid.masks",
                                 "--quiet": "run.progress=false"}, own, ("rho", "k"))


def test_section_keys_and_their_kinds():
  assert flags.section_keys(_Run, "run") == {"run.output": "value", "run.batch_size": "value",
                                             "run.progress": "bool"}
  assert flags.section_keys(_Grid, None, frozenset({"batch_size"})) == {
      "masks": "dict", "optimizers": "tuple"}


def test_last_part_renames_booleans_and_settings():
  got = flags.expand(["--task", "rte", "--max-length=64", "--lr", "1e-4", "--no-progress",
                      "--rho", "0.1", "--opt-arg", "k=2", "--output", "o"], _forms())
  assert got == ["--data.task", "rte", "--data.max_length", "64",
                 "--optimizer.learning_rate", "1e-4", "--run.progress=false",
                 '--optimizer.settings={"rho": 0.1, "k": 2}', "--run.output", "o"]


def test_full_keys_positionals_and_unknown_flags_pass_through():
  argv = ["RUN", "--run.batch_size", "4", "--bogus", "1", "--config", "c.yaml", "-h"]
  assert flags.expand(argv, _forms(), frozenset({"--config"})) == argv


def test_repeated_and_comma_separated_values_collect_into_one_list():
  got = flags.expand(["--optimizers", "adam", "--optimizers", "sam,asam"], _forms())
  assert got == ['--grid.optimizers=["adam", "sam", "asam"]']


def test_labelled_values_fill_a_dict_once_per_label():
  got = flags.expand(["--mask", "a=x/m.safetensors", "--mask", "b=7"], _forms())
  assert got == ['--grid.masks={"a": "x/m.safetensors", "b": "7"}']
  with pytest.raises(FlatjaxInputError, match="label 'a' given twice"):
    flags.expand(["--mask", "a=x", "--mask", "a=y"], _forms())
  with pytest.raises(FlatjaxInputError, match="expected LABEL=VALUE"):
    flags.expand(["--mask", "x"], _forms())


def test_a_later_setting_wins_and_a_bad_number_is_left_for_the_parser():
  got = flags.expand(["--opt-arg", "rho=0.1", "--rho", "0.2", "--k", "nan"], _forms())
  assert got == ['--optimizer.settings={"rho": 0.2, "k": "nan"}']


def test_ties_go_to_the_command_section_else_are_errors():
  assert flags.expand(["--batch-size", "4"], _forms(own="grid")) == ["--grid.batch_size", "4"]
  with pytest.raises(FlatjaxInputError, match="ambiguous.*--run.batch_size.*--grid.batch_size"):
    flags.expand(["--batch-size", "4"], _forms())


def test_a_missing_value_is_left_for_the_parser():
  assert flags.expand(["--task"], _forms()) == ["--data.task"]


def test_a_rename_with_its_value_takes_no_value_from_the_next_flag():
  assert flags.expand(["--quiet", "--task", "rte"], _forms()) == [
      "--run.progress=false", "--data.task", "rte"]
