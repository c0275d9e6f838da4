"""Training on device meshes: the mesh, the sharding rules, the sharded steps."""

from flatjax.parallel.mesh import (AXES, DATA, MODEL, MeshConfig, describe, make_mesh,
                                   mesh_for_run)
from flatjax.parallel.rules import (BERT_RULES, batch_sharding, check_batch_size,
                                    param_shardings, param_specs, replicated, state_shardings)
from flatjax.parallel.sharded import (bytes_per_device, gather_to_host, host_fed, jit_eval_step,
                                      jit_train_step, jit_train_step_m_sharpness, process_rows,
                                      shard_batch, shard_state)
