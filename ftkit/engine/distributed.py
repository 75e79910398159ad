"""Which process this is in a run of several (torchrun sets RANK and WORLD_SIZE); plain Python."""

from __future__ import annotations

import os


def process_rank() -> int:
    """This process's global rank (0 outside a torchrun launch)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (1 outside a torchrun launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the one process that writes to the run store."""
    return process_rank() == 0
