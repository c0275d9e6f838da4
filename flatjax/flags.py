"""Short command-line forms of the configuration's dotted keys.

Every setting of a command is a dotted key of its typed configuration
(``--optimizer.learning_rate``, ``--run.batch_size``); the parser is derived
from the dataclasses by jsonargparse. Typing the full key is rarely needed:
:func:`expand` rewrites the short forms into full keys before parsing.

- ``--batch-size 16``: a key's last part, dashes for underscores, when only one
  key ends so (the command's own section wins a tie);
- ``--lr``, ``--data``, ...: the command's explicit renames;
- ``--no-progress``: ``--run.progress=false`` (any boolean key);
- ``--rho 0.1`` or ``--opt-arg rho=0.1``: ``--optimizer.settings.rho 0.1``;
- repeated or comma-separated values of a tuple key collect into one list
  (``--optimizer adam --optimizer sam``, ``--gates head,mha``);
- ``--mask LABEL=PATH`` fills a dict key, one label per flag.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from flatjax.errors import FlatjaxInputError

# What a key takes: one value, a boolean, a tuple of values, or a dict of labels.
VALUE, BOOL, TUPLE, DICT = "value", "bool", "tuple", "dict"
SETTINGS_KEY = "optimizer.settings"


def kind_of(hint: Any) -> str:
  """The kind of a field's type hint (``X | None`` is X's kind)."""
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    return kind_of(args[0]) if len(args) == 1 else VALUE
  origin = typing.get_origin(hint) or hint
  return {bool: BOOL, tuple: TUPLE, list: TUPLE, dict: DICT}.get(origin, VALUE)


def section_keys(cls: type, prefix: str | None, skip: frozenset = frozenset()) -> dict[str, str]:
  """``{dotted key: kind}`` of the fields of dataclass ``cls`` under ``prefix``."""
  hints = typing.get_type_hints(cls)
  return {(f"{prefix}.{f.name}" if prefix else f.name): kind_of(hints[f.name])
          for f in dataclasses.fields(cls) if f.name not in skip}


@dataclasses.dataclass(frozen=True)
class ShortForms:
  """A command's keys and how its short flags reach them."""
  keys: dict[str, str]                         # dotted key -> kind
  # "--lr" -> key; "--train-embeddings" -> "freeze_embeddings=false" (a key and its value)
  renamed: dict[str, str] = dataclasses.field(default_factory=dict)
  own: str | None = None                       # the command's own section
  settings: tuple[str, ...] = ()               # optimizer settings taken as --NAME

  def resolve(self, flag: str) -> str | None:
    """The key ``flag`` (``--batch-size``) stands for, None if it is no short form."""
    if flag in self.renamed:
      return self.renamed[flag]
    name = flag[2:].replace("-", "_")
    if name in self.keys:
      return name
    if name in self.settings and SETTINGS_KEY in self.keys:
      return f"{SETTINGS_KEY}.{name}"
    found = [k for k in self.keys if k.rsplit(".", 1)[-1] == name]
    if len(found) > 1 and self.own is not None:
      found = [k for k in found if k.startswith(self.own + ".")] or found
    if len(found) > 1:
      raise FlatjaxInputError(f"{flag} is ambiguous: use one of "
                              f"{', '.join('--' + k for k in found)}")
    return found[0] if found else None

  def kind(self, key: str) -> str:
    return self.keys.get(key, VALUE)


def expand(argv: list[str], forms: ShortForms, passthrough: frozenset = frozenset()
           ) -> list[str]:
  """``argv`` with every short form replaced by its dotted key (see the module)."""
  out: list[Any] = []
  collected: dict[str, Any] = {}
  i = 0
  while i < len(argv):
    token = argv[i]
    i += 1
    flag, eq, inline = token.partition("=")
    key = None if not flag.startswith("--") or flag in passthrough or "." in flag else (
        _key_of(flag, forms))
    if key is None:
      out.append(token)
      continue
    key, value = key
    kind = forms.kind(key)
    if kind == BOOL:  # --resume, --no-progress, --keep-best=false, --keep-best false
      if value is None and not eq and i < len(argv) and argv[i].lower() in ("true", "false"):
        value, i = argv[i], i + 1
      out.append(f"--{key}={value or inline or 'true'}")
      continue
    if value is None:
      if not eq and i >= len(argv):
        out.append(f"--{key}")  # the parser says that a value is missing
        continue
      value = inline if eq else argv[i]
      i += 0 if eq else 1
    if key.startswith(SETTINGS_KEY + "."):  # --rho 0.1: one of the optimizer's settings
      key, value = SETTINGS_KEY, f"{key[len(SETTINGS_KEY) + 1:]}={value}"
      kind = DICT
    if kind not in (TUPLE, DICT):
      out.extend([f"--{key}", value])
      continue
    if key not in collected:
      collected[key] = [] if kind == TUPLE else {}
      out.append((key,))  # where the collected value goes
    _collect(collected[key], flag, value, numbers=kind == TUPLE or key == SETTINGS_KEY,
             again=key == SETTINGS_KEY)
  return [f"--{t[0]}={json.dumps(collected[t[0]])}" if isinstance(t, tuple) else t
          for t in out]


def _key_of(flag: str, forms: ShortForms) -> tuple[str, str | None] | None:
  """``(key, fixed value)`` of a short flag, None if it is none: ``--no-X`` of a
  boolean key is ``(X, "false")``; ``--opt-arg NAME=VALUE`` sets one setting."""
  if flag == "--opt-arg" and SETTINGS_KEY in forms.keys:
    return SETTINGS_KEY, None
  key = forms.resolve(flag)
  if key is None and flag.startswith("--no-"):
    negated = forms.resolve("--" + flag[5:])
    if negated is not None and forms.kind(negated) == BOOL:
      return negated, "false"
  if key is None:
    return None
  key, fixed, value = key.partition("=")   # a rename with its value: "key=false"
  return key, value if fixed else None


def _collect(into: list | dict, flag: str, value: str, numbers: bool, again: bool) -> None:
  """Adds ``value`` (comma-separated items, or ``LABEL=ITEM``) to a tuple or dict."""
  parse = _scalar if numbers else str
  if isinstance(into, list):
    into.extend(parse(v.strip()) for v in value.split(",") if v.strip())
    return
  label, sep, item = (x.strip() for x in value.partition("="))
  if not sep or not label or not item:
    raise FlatjaxInputError(f"{flag}: expected LABEL=VALUE, got {value!r}")
  if label in into and not again:
    raise FlatjaxInputError(f"{flag}: label {label!r} given twice")
  into[label] = parse(item)


def _scalar(text: str) -> Any:
  """The number the text writes, if it is a finite one (so that JSON carries its
  type), else the text (for the parser to accept or refuse)."""
  for cast in (int, float):
    try:
      value = cast(text)
    except ValueError:
      continue
    return value if value == value and abs(value) != float("inf") else text
  return text
