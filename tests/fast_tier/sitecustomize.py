"""Python runs this at start-up in every process a fast-tier test starts (tests/conftest.py puts this
folder on PYTHONPATH): such a process may not start a training process either (spawn_guard.py)."""

import os

if os.environ.get("FTKIT_TEST_TIER") == "fast" and os.environ.get("FTKIT_TEST_REFUSALS"):
    import spawn_guard

    spawn_guard.install(spawn_guard.refuse_in_a_child)
