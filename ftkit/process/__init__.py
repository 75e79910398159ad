"""The processes behind a run that never import torch: the supervisor that owns a run, the torchrun
launch of several processes and nodes, and the runner of one-off jobs on a run's checkpoints.

They spawn the engine's processes by module name (``python -m ftkit.engine.worker``, ``python -m
ftkit.engine.rank``) and import nothing of it, so a launch answers in a fraction of a second.
"""
