"""Device meshes from configuration: ``data=4,model=2``.

flatjax trains on a 2-D mesh of devices: the ``data`` axis splits every batch
(data parallelism), the ``model`` axis splits the big BERT kernels
(Megatron-style tensor parallelism, :mod:`flatjax.parallel.rules`). On one
device both axes have size 1 and the sharded step is the plain one.
The mesh's axes are ``AxisType.Auto``: shardings are declared for the step's
inputs and outputs and XLA's partitioner (GSPMD/Shardy) propagates them
through the model, so ``flatjax.models.bert`` carries no sharding code.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
from jax.sharding import AxisType, Mesh

from flatjax.errors import FlatjaxInputError

DATA, MODEL = "data", "model"
AXES = (DATA, MODEL)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Sizes of the ``data`` and ``model`` axes; ``None``: what the devices leave.

  ``MeshConfig()`` is pure data parallelism over every device;
  ``MeshConfig(model=2)`` splits the kernels in two and the batch over the
  rest. The product must equal the number of devices used.
  """
  data: int | None = None
  model: int | None = 1

  @classmethod
  def parse(cls, spec: str | None) -> "MeshConfig":
    """``"data=4,model=2"``, ``"model=8"``, ``"data=8"``, or None/"" (the default)."""
    if not spec:
      return cls()
    sizes: dict[str, int] = {}
    for part in spec.split(","):
      name, sep, value = part.strip().partition("=")
      if not sep or name not in AXES or name in sizes:
        raise FlatjaxInputError(f"mesh {spec!r}: expected axis=size pairs from {AXES}, "
                                "e.g. data=4,model=2, each axis once")
      try:
        sizes[name] = int(value)
      except ValueError:
        raise FlatjaxInputError(f"mesh {spec!r}: {name} size {value!r} is not an integer") from None
      if sizes[name] < 1:
        raise FlatjaxInputError(f"mesh {spec!r}: {name} size must be at least 1")
    return cls(data=sizes.get(DATA), model=sizes.get(MODEL, None if DATA in sizes else 1))

  def shape(self, num_devices: int) -> tuple[int, int]:
    """``(data, model)`` on ``num_devices`` devices (a missing size fills the rest)."""
    data, model = self.data, self.model
    if data is None and model is None:
      model = 1
    if data is None:
      data, rest = divmod(num_devices, model)
      if rest or data == 0:
        raise FlatjaxInputError(f"model axis {model} does not divide the {num_devices} devices")
    elif model is None:
      model, rest = divmod(num_devices, data)
      if rest or model == 0:
        raise FlatjaxInputError(f"data axis {data} does not divide the {num_devices} devices")
    if data * model != num_devices:
      raise FlatjaxInputError(f"mesh data={data},model={model} needs {data * model} devices; "
                              f"{num_devices} are present")
    return data, model


def make_mesh(config: MeshConfig | str | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ``(data, model)`` mesh over ``devices`` (default: every device of every
  process, ``jax.devices()``), laid out by ``jax.make_mesh`` so that the model
  axis runs over the closest devices (one host's chips, one ICI ring)."""
  if not isinstance(config, MeshConfig):
    config = MeshConfig.parse(config)
  devices = list(jax.devices() if devices is None else devices)
  shape = config.shape(len(devices))
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def describe(mesh: Mesh) -> str:
  """``data=4,model=2 on 8 cpu devices (1 process)``: for logs and run configs."""
  sizes = ",".join(f"{n}={s}" for n, s in mesh.shape.items())
  platforms = sorted({d.platform for d in mesh.devices.flat})
  processes = len({d.process_index for d in mesh.devices.flat})
  return (f"{sizes} on {mesh.devices.size} {'/'.join(platforms)} devices "
          f"({processes} process{'es' if processes > 1 else ''})")


def mesh_for_run(spec: str | None) -> Mesh | None:
  """The mesh a run trains on: ``spec`` (``--mesh``) if given; else, with
  several devices, all of them data parallel; with one device, None (the
  plain single-device step)."""
  if spec is None and jax.device_count() == 1:
    return None
  return make_mesh(spec)
