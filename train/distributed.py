"""Which process this is, on which device, and its RNG state for checkpoints.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them this is a single
process. RNG states are gathered from every rank into the checkpoint because each rank draws
its own dropout masks and penalty coefficients, and an exact resume needs all of them.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .config import TrainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Process:
    distributed: bool = False  # launched by torchrun (even with one process)
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def master(self) -> bool:
        return self.rank == 0  # the one that logs, validates and writes checkpoints


def this_process() -> Process:
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Process()
    return Process(True, int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: this PyTorch sees no CUDA GPU; use --device cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def rng_state(device: torch.device) -> dict:
    # Plain tensors and lists only: checkpoints are read with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "python": [version, torch.tensor(internal, dtype=torch.int64), gauss]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def gather_rng(device: torch.device, ddp: bool, world_size: int) -> list[dict]:
    """Every rank's RNG states, in rank order (each rank draws different dropout and alphas)."""
    state = rng_state(device)
    if not ddp:
        return [state]
    states: list = [None] * world_size
    dist.all_gather_object(states, state)
    return states


def restore_rng(states: list[dict], rank: int, world_size: int, device: torch.device) -> None:
    if len(states) != world_size:
        log.warning("checkpoint has RNG states for %d processes, this run has %d: continuing with fresh "
                    "seeds, so the run will not repeat an uninterrupted one exactly", len(states), world_size)
        return
    state = states[rank]
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
