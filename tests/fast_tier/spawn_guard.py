"""`make test-fast` starts no training process: a guard on `subprocess.Popen`, in the test run and its children.

tests/conftest.py installs it in the pytest process when FTKIT_TEST_TIER=fast, refusing a command
only where the running test is not marked spawns or slow; `sitecustomize.py` beside this file
installs it in every Python process a test starts (the conftest puts this folder on PYTHONPATH),
where it refuses every such command and notes it in $FTKIT_TEST_REFUSALS for the conftest to fail
the test that caused it. A refused start raises `SpawnRefused`, a BaseException, so the code under
test cannot swallow it with ``except Exception``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, Callable

_ORIGINAL_INIT = subprocess.Popen.__init__
_policy: dict[str, Callable[[str], None] | None] = {"refuse": None}


class SpawnRefused(BaseException):
    """A fast-tier test started a training process."""


def training_command(args: Any) -> str | None:
    """The part of a command line that starts ftkit or torchrun, if it does: `-m ftkit...`, the `ftkit`
    script, torchrun or `-m torch.distributed.run`."""
    if isinstance(args, str):
        argv = shlex.split(args)
    else:
        argv = [os.fsdecode(a) for a in ([args] if isinstance(args, (bytes, os.PathLike)) else args)]
    for i, arg in enumerate(argv):
        if Path(arg).name in ("torchrun", "ftkit") or arg in ("torch.distributed.run", "torch.distributed.launch"):
            return arg
        module = argv[i + 1] if arg == "-m" and i + 1 < len(argv) else arg[2:] if arg.startswith("-m") else ""
        if module == "ftkit" or module.startswith("ftkit."):
            return f"-m {module}"
    return None


def _guarded_init(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
    refuse, found = _policy["refuse"], training_command(args)
    if refuse is not None and found:
        refuse(found)  # raises SpawnRefused where the policy refuses
    _ORIGINAL_INIT(self, args, *rest, **kwargs)


def install(refuse: Callable[[str], None]) -> None:
    """Guard every later Popen with ``refuse(command)`` (installing again replaces the policy)."""
    _policy["refuse"] = refuse
    subprocess.Popen.__init__ = _guarded_init


def refuse_in_a_child(found: str) -> None:
    """The policy of a process a test started: note the command for the test run, then refuse it."""
    message = f"`{found}` started by a child process (pid {os.getpid()})"
    with open(os.environ["FTKIT_TEST_REFUSALS"], "a", encoding="utf-8") as notes:
        notes.write(message + "\n")
    raise SpawnRefused(f"the fast tier starts no training process: {message}")
