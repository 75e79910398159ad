"""The notebook layer: `%finetune` / `%ftkit` magics, run displays and widgets.

It parses, shows and delegates to the `Run` handle; it never trains in the kernel.
"""
