"""A run queue per device: runs launched while their devices are busy wait as ``queued``, start in
launch order, and spread over the machine's GPUs.

Everything is an OS file lock (taken through ``filelock``) under the store's ``.devices/<host>/`` folder
(machines that share a store each queue for their own devices). The kernel drops a
lock when the last process holding it ends, so a killed waiter or worker never keeps a device or
blocks the queue, and nothing here checks a pid:

- a ticket per waiting run, ``queue/<launch time>-<run id>.ticket``, held from the launch
  (`ftkit.runs` takes it and hands it to the supervisor) until the run leaves the queue. Tickets sort
  in launch order; one that nobody holds belongs to a waiter that died, and is removed.
- slots, ``<device>.<k>.lock`` for k below ``resources.runs_per_device``: a run starts once no live
  ticket before its own wants one of its devices and it can hold a free slot on as many devices as
  it has training processes (the least loaded first); its supervisor and its worker hold them until
  both have ended.

Devices are the visible GPUs (``cuda:<id>``), else the ``cpu``, counted without torch; the worker
sees only the GPUs it holds (``CUDA_VISIBLE_DEVICES``). Plain Python: the supervisor calls
:func:`wait_for_devices` before it starts the worker.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..errors import RunError
from .files import is_locked, lock
from .liveness import host_identity
from .layout import DEVICES_DIR, RUN_FILE

if TYPE_CHECKING:
    from ..config import Config
    from .store import RunStore

WAITING_PHASE = "waiting for device"
POLL_SECONDS = 0.5
TICKET_SUFFIX = ".ticket"


def visible_devices(config: "Config") -> list[str]:
    """The devices this machine's runs take turns on: every visible GPU (``cuda:<id>``), else ``cpu``.

    CUDA_VISIBLE_DEVICES when set (as CUDA reads it: up to the first negative entry), else the GPUs
    ``nvidia-smi -L`` lists: the supervisor never imports torch to count them.
    """
    if config.training.device == "cpu":
        return ["cpu"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [entry.strip() for entry in visible.split(",")]
        ids = list(itertools.takewhile(lambda entry: entry and not entry.startswith("-"), entries))
    else:
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        ids = [str(i) for i, _ in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]
    return [f"cuda:{i}" for i in ids] or ["cpu"]


def devices_needed(config: "Config", devices: list[str]) -> int:
    """How many of ``devices`` a run holds: one GPU per training process ('auto': all), or the cpu."""
    if devices == ["cpu"]:
        return 1
    wanted = config.resources.devices
    return len(devices) if wanted == "auto" else int(wanted)


@dataclass
class DeviceHold:
    """The devices a run holds for its worker's life (none when it does not queue)."""

    devices: list[str] = field(default_factory=list)
    handles: list[IO] = field(default_factory=list)  # the locked slot files; the worker inherits them
    cpu_threads: int | None = None  # a run sharing the CPU (runs_per_device > 1): its share of the cores at its start

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(handle.fileno() for handle in self.handles)

    def worker_env(self) -> dict[str, str] | None:
        """The worker's environment: it sees only the GPUs held for it (None: this process's own)."""
        gpus = [device.removeprefix("cuda:") for device in self.devices if device.startswith("cuda:")]
        if gpus:
            return {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
        if self.cpu_threads:  # runs sharing the CPU each take their share of its cores, not all of them each
            before = int(os.environ.get("OMP_NUM_THREADS") or self.cpu_threads)
            return {**os.environ, "OMP_NUM_THREADS": str(min(before, self.cpu_threads))}
        return None


@dataclass
class Ticket:
    """A waiting run's place in line, held by its launcher and then (through the descriptor it inherits) its supervisor."""

    path: Path
    handle: IO
    devices: list[str] | None = None

    def announce(self, devices: list[str]) -> None:
        """Say which devices this run wants; until then, runs behind it wait for it whatever they want."""
        self.devices = devices
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(json.dumps(devices))
        self.handle.flush()

    def leave(self) -> None:
        self.path.unlink(missing_ok=True)
        self.handle.close()


class DeviceQueue:
    """The tickets and device slots of one run store."""

    def __init__(self, root: Path):
        self.slots = host_devices(root)
        self.tickets = self.slots / "queue"

    def take_ticket(self, run_id: str) -> Ticket:
        """A new place at the end of the line, locked before anyone can see it (an unlocked ticket is a dead one)."""
        self.tickets.mkdir(parents=True, exist_ok=True)
        path = self.tickets / f"{time.time():017.6f}-{run_id}{TICKET_SUFFIX}"
        draft = path.with_name(f".{path.name}.draft")
        handle = open(draft, "w+", encoding="utf-8")
        lock(handle)
        os.replace(draft, path)  # the lock belongs to the file, so it moves with it
        return Ticket(path, handle)

    def ticket(self, run_id: str) -> Ticket:
        """This run's newest ticket (the one its launcher took), or a new one for a supervisor started by hand."""
        own = sorted(self.tickets.glob(f"*-{run_id}{TICKET_SUFFIX}"))
        if own:
            handle = open(own[-1], "r+", encoding="utf-8")
            # Held through the descriptor this process inherited from its launcher; if nobody holds it (a
            # supervisor started by hand over a dead launcher's ticket), this handle takes it over.
            lock(handle, wait=False)
            return Ticket(own[-1], handle)
        return self.take_ticket(run_id)

    def ahead_of(self, ticket: Ticket) -> int:
        """Live waiters launched before ``ticket`` that want one of its devices (or have not said yet)."""
        ahead = 0
        for path in sorted(self.tickets.glob(f"*{TICKET_SUFFIX}")):
            if path.name >= ticket.path.name:
                break
            wanted = _waiter_wants(path)
            if wanted is not None and (not wanted or set(wanted) & set(ticket.devices or [])):
                ahead += 1
        return ahead

    def take_slots(self, devices: list[str], need: int, per_device: int) -> DeviceHold | None:
        """A free slot on ``need`` of ``devices``, the least loaded first; None (holding nothing) if too few are free."""
        self.slots.mkdir(parents=True, exist_ok=True)
        free: dict[str, list[IO]] = {}
        for device, k in itertools.product(devices, range(per_device)):
            handle = _try_lock(self.slots / _slot_name(device, k))
            if handle is not None:
                free.setdefault(device, []).append(handle)
        chosen = sorted(free, key=lambda device: -len(free[device]))[:need] if len(free) >= need else []
        kept = {device: free[device].pop() for device in chosen}
        for handle in itertools.chain.from_iterable(free.values()):
            handle.close()
        if not chosen:
            return None
        in_order = [device for device in devices if device in kept]
        threads = cpu_share(self.slots.parent.parent, per_device) if in_order == ["cpu"] and per_device > 1 else None
        return DeviceHold(in_order, [kept[device] for device in in_order], threads)


def cpu_share(root: Path, per_device: int) -> int:
    """The cores of this machine divided among the runs holding a CPU slot of the store at ``root`` now (at least 1
    each): what a run sharing the CPU (``resources.runs_per_device`` > 1) takes, told again as runs come and go."""
    holders = sum(is_locked(host_devices(root) / _slot_name("cpu", k)) for k in range(per_device))
    return max(1, (os.cpu_count() or 1) // max(1, holders))


def host_devices(root: Path | str) -> Path:
    """This machine's slots and tickets: machines that share a store each have their own ``cuda:0``."""
    return Path(root) / DEVICES_DIR / re.sub(r"[^A-Za-z0-9_.-]", "_", host_identity()["host"] or "host")


def _slot_name(device: str, k: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '', device)}.{k}.lock"


def _try_lock(path: Path) -> IO | None:
    handle = open(path, "a")
    if not lock(handle, wait=False):
        handle.close()
        return None
    return handle


def _waiter_wants(path: Path) -> list[str] | None:
    """The devices the waiter behind ``path`` wants ([] until it says); None if it is gone (its ticket removed)."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        if not lock(handle, wait=False):  # its launcher or supervisor holds it: still waiting
            try:
                wanted = json.loads(handle.read() or "[]")
            except ValueError:  # caught mid-write
                return []
            return wanted if isinstance(wanted, list) else []
        path.unlink(missing_ok=True)  # nobody holds it: the waiter died
        return None


def wait_for_devices(store: "RunStore", run_id: str, config: "Config", poll: float = POLL_SECONDS) -> DeviceHold | None:
    """Wait, while the run stays queued, until it is first in line and its devices have a free slot; hold them.

    While it waits the run reports the phase "waiting for device" and how many runs are ahead.
    None when the run leaves the queue without starting: stopped (recorded here), deleted (nothing
    left to record), no longer queued, or asking for more GPUs than the machine has (recorded as failed).
    """
    queue = DeviceQueue(store.root)
    ticket = queue.ticket(run_id)
    try:
        return _wait_in_line(store, run_id, config, queue, ticket, poll)
    except (RunError, FileNotFoundError):
        if (store.root / run_id / RUN_FILE).is_file():
            raise
        return None  # deleted while it waited
    finally:
        ticket.leave()


def _wait_in_line(store: "RunStore", run_id: str, config: "Config", queue: DeviceQueue, ticket: Ticket,
                  poll: float) -> DeviceHold | None:
    per_device = config.resources.runs_per_device
    if per_device == 0:
        return DeviceHold()
    devices = visible_devices(config)
    need = devices_needed(config, devices)
    if need > len(devices):
        store.set_status(run_id, "failed", error=f"resources.devices asks for {need} GPUs; this machine has "
                                                 f"{len(devices)} ({', '.join(devices)})")
        return None
    ticket.announce(devices)
    shown = None
    while True:
        if store.read_record(run_id).get("status") != "queued":
            return None
        if store.stop_requested(run_id):
            store.set_status(run_id, "stopped")
            return None
        ahead = queue.ahead_of(ticket)
        hold = None if ahead else queue.take_slots(devices, need, per_device)
        if hold is not None:
            return hold
        detail = f"({ahead} run{'' if ahead == 1 else 's'} ahead)" if ahead else f"({', '.join(devices)} in use)"
        if detail != shown:
            store.append_event(run_id, {"type": "phase", "phase": WAITING_PHASE, "detail": detail, "ahead": ahead})
            shown = detail
        time.sleep(poll)
