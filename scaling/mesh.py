"""Where a run lives: its device mesh, where each array sits on it, and whether it fits.

A 1-D ("data",) mesh (parameters replicated: data parallelism with pmap semantics) or a 2-D
("data", "fsdp") mesh (`TrainConfig.mesh_fsdp`: parameters, gradients and AdamW state split
ZeRO-3 style over "fsdp"), both with Auto axis types (`jax.make_mesh` defaults to Explicit,
see the field notes). The batch's rows are split over every axis; each host builds only its
own rows and `jax.make_array_from_process_local_data` assembles the global batch. XLA's SPMD
partitioner inserts every collective: this module only says where arrays live.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scaling import memory
from scaling.config import RunConfig
from scaling.memory import fsdp_axis


def data_mesh(devices=None) -> Mesh:
    """A 1-D data-parallel mesh over `devices` (default: every device of every host)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), ("data",))


def make_mesh(fsdp: int = 1, devices=None) -> Mesh:
    """The mesh of `TrainConfig.mesh_fsdp = fsdp` over `devices` (default: all of every host):
    `data_mesh` for 1, else ("data", "fsdp") of shape (devices / fsdp, fsdp). Consecutive
    devices (those of one host first) form an fsdp group, so the weight gathers stay on the
    fastest links when a group fits in a host."""
    devices = list(jax.devices() if devices is None else devices)
    if not (isinstance(fsdp, int) and fsdp >= 1) or len(devices) % fsdp:
        raise ValueError(f"TrainConfig.mesh_fsdp={fsdp!r}: must divide the {len(devices)} devices "
                         f"(mesh data x fsdp = {len(devices)})")
    if fsdp == 1:
        return data_mesh(devices)
    return Mesh(np.array(devices).reshape(len(devices) // fsdp, fsdp), ("data", "fsdp"))


def mesh_fsdp(mesh: Mesh) -> int:
    """The size of `mesh`'s fsdp axis (1 for a data-parallel mesh)."""
    return int(dict(mesh.shape).get("fsdp", 1))


def _replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _row_axes(mesh: Mesh):
    """The mesh axes a batch's rows are split over: every axis ("data" alone on a 1-D mesh)."""
    return "data" if mesh.axis_names == ("data",) else tuple(mesh.axis_names)


def _rows(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(_row_axes(mesh)))


def sharding_of(shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
    """Where an array of `shape` of the training state lives on `mesh`: split over "fsdp"
    along `scaling.memory.fsdp_axis(shape)`, else replicated (always on a data mesh)."""
    axis = fsdp_axis(tuple(shape), mesh_fsdp(mesh))
    if axis is None:
        return _replicated(mesh)
    return NamedSharding(mesh, P(*("fsdp" if i == axis else None for i in range(len(shape)))))


def state_shardings(tree, mesh: Mesh):
    """`sharding_of` every array (or ShapeDtypeStruct) of a state tree: params or AdamW state."""
    return jax.tree.map(lambda x: sharding_of(x.shape, mesh), tree)


def host_rows(mesh: Mesh) -> tuple[int, int]:
    """(this host's index, number of hosts) among `mesh`'s hosts: which rows of the global
    batch this process builds (`Dataset.batch(..., process_index=, process_count=)`)."""
    procs = sorted({d.process_index for d in mesh.devices.flat})
    return procs.index(jax.process_index()), len(procs)


def put_batch(mesh: Mesh, local_BxT1: np.ndarray, global_rows: int) -> jax.Array:
    """This host's rows -> the global batch array sharded P('data') over `mesh`."""
    return jax.make_array_from_process_local_data(_rows(mesh), local_BxT1, (global_rows, local_BxT1.shape[1]))


def put_batches(mesh: Mesh, local_KxBxT1: np.ndarray, global_rows: int) -> jax.Array:
    """K batches of this host's rows -> one [K, global rows, T + 1] array, rows sharded P(None, 'data')."""
    K, _, T1 = local_KxBxT1.shape
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P(None, _row_axes(mesh))), local_KxBxT1,
                                                  (K, global_rows, T1))


def plan_memory(cfg: RunConfig, mesh: Mesh, device_kind: str | None = None) -> memory.MemoryPlan:
    """The run's bytes per device on `mesh`, printed by process 0 (on accelerators, or with
    fsdp > 1); a ValueError naming the
    smallest mesh that fits when it exceeds the chip's memory. `device_kind` defaults to the
    mesh's devices; CPUs have no known limit (pass a kind to plan for another chip)."""
    fsdp = mesh_fsdp(mesh)
    if fsdp != cfg.train.mesh_fsdp:
        raise ValueError(f"TrainConfig.mesh_fsdp={cfg.train.mesh_fsdp}: the mesh given has fsdp={fsdp} "
                         f"({dict(mesh.shape)}); build it with scaling.step.make_mesh(cfg.train.mesh_fsdp)")
    device = mesh.devices.flat[0]
    kind, capacity = device_kind, None
    if kind is None:
        kind = device.device_kind
        if device.platform != "cpu":  # what XLA's allocator may use (JAX preallocates 75% on GPUs)
            capacity = (device.memory_stats() or {}).get("bytes_limit")
    plan = memory.check_fits(cfg, mesh.size // fsdp, fsdp, kind, capacity=capacity)
    # Printed where it can matter: a chip with a known memory (CPUs have none), or a sharded mesh.
    if jax.process_index() == 0 and (plan.capacity is not None or fsdp > 1):
        print(f"{cfg.name}: {memory.format_plan(plan)}", flush=True)
    return plan
