"""The engine: everything that imports torch, transformers and peft (models, adapters, the Trainer
and its reporting, arguments, launch, worker, evaluation, inference).

Only worker processes train; the notebook, the server and the CLI import engine modules lazily and
only to load a model for inference. This package's own import is light.
"""
