"""Data named by a variable of the user's notebook: `%finetune --data df_train`, or `df_train` typed
into the ConfigForm's data field, means the DataFrame (Dataset, DatasetDict, list of dicts) itself."""

from __future__ import annotations

from typing import Any, Mapping

from ..config import Config, is_in_memory_data
from ..data.splits import SPLITS


def with_namespace_data(config: Config, namespace: Mapping[str, Any] | None = None) -> Config | dict[str, Any]:
    """``config``, or its dict with each data value that names in-memory data in ``namespace`` (default:
    the running IPython's user namespace) replaced by that object; `ftkit.runs.start` snapshots it."""
    if namespace is None:
        from IPython import get_ipython

        shell = get_ipython()
        namespace = shell.user_ns if shell is not None else {}
    found = {split: namespace[name] for split in SPLITS
             if isinstance(name := getattr(config.data, split), str) and name.isidentifier()
             and is_in_memory_data(namespace.get(name))}
    if not found:
        return config
    settings = config.to_dict()
    settings["data"].update(found)
    return settings
