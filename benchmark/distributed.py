"""Several processes for one run: Lightning Fabric launches them, the pipeline shares the work.

``launch(...)`` returns the :class:`Dist` of this process. With one device
and no cluster launcher around, it is the plain single-process ``Dist()`` (no process group, no
Fabric). Otherwise Fabric's DDP strategy sets up the process group (gloo on CPU, NCCL on GPU):

- ``mirprobe run ... launch.devices=N``: Fabric starts N-1 more copies of the same command
  line on this machine (each rank re-reads the same config);
- under ``torchrun`` or ``srun`` (SLURM) the processes already exist; the number of devices per
  node and of nodes is read from the launcher's environment, so the same command line works
  unchanged on one GPU, eight GPUs, or a multi-node allocation.

What each rank then does is the pipeline's: every rank extracts its share of the chunks of each
feature entry into the same ``<entry>.partial/`` folder, rank 0 publishes the entry once all
shares are on disk, and probe jobs (task × feature entry) are dealt out across ranks. A killed
rank leaves its finished chunks behind; a re-run (any number of processes) extracts only the rest.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from mirprobe.errors import UserError

# Probe jobs differ in length (a tagging job can take far longer than a key job) and the slowest
# rank holds the others at the closing barrier: wait for hours, not torch's default 30 minutes.
BARRIER_TIMEOUT = timedelta(hours=24)

ACCELERATORS = {"auto": "auto", "cpu": "cpu", "cuda": "cuda", "gpu": "cuda", "mps": "mps"}


@dataclass
class Dist:
    """This process's place among the run's processes (one process unless launched distributed)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None  # the rank's device; None: from the config's `device`
    barrier: Callable[[], None] = field(default=lambda: None)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Plan:
    """How many processes, where: resolved from the options and the launcher's environment."""

    environment: str  # "local" (Fabric starts the processes), "torchrun" or "slurm"
    accelerator: str  # a Fabric accelerator name: auto | cpu | cuda | mps
    devices: int | str  # processes per node ("auto": every visible GPU)
    num_nodes: int

    @property
    def single(self) -> bool:
        """One process in all: no process group is needed."""
        return self.devices == 1 and self.num_nodes == 1


def detect_environment(environ: Mapping[str, str] | None = None) -> str:
    """``"torchrun"``, ``"slurm"`` (a job step started by ``srun``) or ``"local"``."""
    env = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" in env and "LOCAL_WORLD_SIZE" in env:
        return "torchrun"
    # Fabric's rule: SLURM_NTASKS marks an srun step, except interactive shells on an allocation
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return "slurm"
    return "local"


def _count(key: str, value: Any, *, allow_auto: bool) -> int | str:
    if allow_auto and value in (None, "auto"):
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() != str(n):
        allowed = "a positive integer or auto" if allow_auto else "a positive integer"
        raise UserError(f"config key {key!r}: {value!r} is not allowed; use {allowed}")
    return n


def plan(devices: Any = 1, num_nodes: Any = 1, accelerator: str = "auto",
         environ: Mapping[str, str] | None = None) -> Plan:
    """Resolve the launch options against the environment (torchrun and SLURM decide the counts).

    Under a launcher, ``devices``/``num_nodes`` left at 1 or ``auto`` take the launcher's values;
    any other value must agree with them (a mismatch would hang or crash inside the collective).
    """
    env = os.environ if environ is None else environ
    if accelerator not in ACCELERATORS:
        raise UserError(f"config key 'device': {accelerator!r} is not allowed; use one of: "
                        f"{', '.join(ACCELERATORS)}")
    acc = ACCELERATORS[accelerator]
    want_devices = _count("launch.devices", devices, allow_auto=True)
    want_nodes = _count("launch.num_nodes", num_nodes, allow_auto=True)
    where = detect_environment(env)
    if where == "local":
        if want_nodes not in (1, "auto"):
            raise UserError(f"launch.num_nodes={want_nodes} needs a cluster launcher: start the command "
                            f"with torchrun --nnodes {want_nodes} or srun (see examples/slurm/)")
        if want_devices == "auto" and acc == "cpu":
            want_devices = 1
        return Plan(where, acc, want_devices, 1)
    if where == "torchrun":
        have_devices = int(env["LOCAL_WORLD_SIZE"])
        have_nodes = int(env.get("WORLD_SIZE", have_devices)) // have_devices
        hint = "torchrun --nproc_per_node / --nnodes"
    else:
        have_devices = int(str(env.get("SLURM_NTASKS_PER_NODE", env["SLURM_NTASKS"])).split("(")[0])
        have_nodes = int(env.get("SLURM_NNODES", "1"))
        hint = "#SBATCH --ntasks-per-node / --nodes"
    for key, want, have in (("launch.devices", want_devices, have_devices),
                            ("launch.num_nodes", want_nodes, have_nodes)):
        if want not in (1, "auto", have):
            raise UserError(f"{key}={want} but {where} started {have}; set {key}=auto "
                            f"(or change {hint})")
    return Plan(where, acc, have_devices, have_nodes)


def _quiet_lightning() -> None:
    """Fabric logs a banner per rank; the run's own output is what users read."""
    for name in ("lightning.fabric", "lightning_fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _share_cpu_threads(local_processes: int) -> None:
    """Processes on one machine split its cores instead of each spawning a thread per core."""
    if "OMP_NUM_THREADS" in os.environ or local_processes <= 1:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_processes))


def launch(devices: Any = 1, num_nodes: Any = 1, accelerator: str = "auto", *,
           environ: Mapping[str, str] | None = None) -> Dist:
    """This process's :class:`Dist`; starts the other processes when Fabric is the launcher.

    Every process that calls this must run the same command line: in the local case, Fabric
    re-executes ``sys.argv`` for ranks 1..N-1, and this call returns in each of them.
    """
    p = plan(devices, num_nodes, accelerator, environ)
    if p.single and p.environment == "local":
        return Dist()
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    _quiet_lightning()
    try:
        fabric = Fabric(accelerator=p.accelerator, devices=p.devices, num_nodes=p.num_nodes,
                        strategy=DDPStrategy(timeout=BARRIER_TIMEOUT))
    except (ValueError, RuntimeError) as e:  # e.g. devices=4 with 2 GPUs visible
        raise UserError(f"cannot launch {p.devices} process(es) per node on {p.accelerator} "
                        f"({str(e).splitlines()[0]}); set launch.devices to at most the number of "
                        f"GPUs (or auto), or device=cpu") from e
    fabric.launch()
    if fabric.device.type == "cpu":
        _share_cpu_threads(fabric.world_size // max(1, p.num_nodes))
    print(f"mirprobe: rank {fabric.global_rank} of {fabric.world_size} on {fabric.device} "
          f"({p.environment})", file=sys.stderr, flush=True)
    return Dist(rank=fabric.global_rank, world_size=fabric.world_size, device=fabric.device,
                barrier=fabric.barrier)


def launch_from_config(cfg: Any) -> Dist:
    """:func:`launch` with the run config's ``launch.*`` keys and its ``device`` as accelerator."""
    section = cfg.get("launch") or {}
    return launch(section.get("devices", 1), section.get("num_nodes", 1), str(cfg.device))

