"""The run record: the layer under the engine and every surface.

A run is a folder (the truth, one writer at a time) plus a row in a SQLite index (a cache rebuilt
from the folders). Plain Python: no torch, no ftkit layer above this one.
"""

from .files import DiskFull, folder_size, is_disk_full, no_space
from .index import SORT_KEYS, IndexDamaged
from .liveness import DIED_WITHOUT_REPORTING, host_identity, process_alive, process_start_time
from .store import RunBusy, RunStore

__all__ = ["DIED_WITHOUT_REPORTING", "SORT_KEYS", "DiskFull", "IndexDamaged", "RunBusy", "RunStore", "folder_size",
           "host_identity", "is_disk_full", "no_space", "process_alive", "process_start_time"]
