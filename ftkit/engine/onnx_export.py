"""An encoder (NER, classification) as ONNX for ONNX Runtime, and a `Predictor` that runs the exported file.

Written with torch.onnx's dynamo exporter, whose dynamic batch and sequence axes hold with padding (the
TorchScript exporter's padded batches differed from PyTorch's by 0.1 in the logits here). Beside
``model.onnx`` go the tokenizer files and ``config.json`` with the label map, so a user needs only
``onnxruntime`` and ``tokenizers``/``transformers``' tokenizer to run it.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .inference import Predictor

ONNX_MODEL_FILE = "model.onnx"


def write_onnx(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """``out_dir/model.onnx`` (logits from the tokenizer's inputs, any batch and length), the tokenizer and
    the model's config beside it; returns the model file."""
    import torch
    from torch.export import Dim

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    names = [name for name in tokenizer.model_input_names if name in ("input_ids", "attention_mask", "token_type_ids")]
    example = tokenizer(["a short example", "and a somewhat longer example sentence"], padding=True, return_tensors="pt")
    inputs = {name: example[name] for name in names}
    batch, sequence = Dim("batch"), Dim("sequence")
    path = out_dir / ONNX_MODEL_FILE

    class LogitsOnly(torch.nn.Module):  # the graph's one output: the logits
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None) -> Any:
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, **{k: v for k, v in given.items() if v is not None}).logits

    with _quiet_exporter(), torch.inference_mode():
        torch.onnx.export(LogitsOnly(), (), str(path), kwargs=inputs, input_names=names,
                          output_names=["logits"], dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes={name: {0: batch, 1: sequence} for name in names})
    model.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return path


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter reports each pass on its loggers and warns about torchvision; a user sees ftkit's progress."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class OnnxPredictor(Predictor):
    """Predictions from an exported ONNX folder through ONNX Runtime, as its task makes them from any model.

    With ``reference`` (the PyTorch model it came from) each batch also runs there, and
    ``max_logit_difference`` keeps the largest absolute difference seen.
    """

    def __init__(self, folder: str | Path, task: str, reference: Any = None, threads: int | None = None):
        import onnxruntime
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(folder)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(folder / ONNX_MODEL_FILE), options,
                                                    providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.reference = reference.eval() if reference is not None else None
        self.max_logit_difference = 0.0
        self.reference_seconds = 0.0  # spent in the reference model: not the export's own time
        self.model = None
        self._describe(AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), task)

    def probabilities(self, encoded: Any) -> Any:
        import torch

        logits = torch.from_numpy(self.session.run(["logits"], {name: encoded[name].numpy()
                                                                 for name in self.input_names})[0])
        if self.reference is not None:
            began = time.perf_counter()
            with torch.inference_mode():
                expected = self.reference(**{name: encoded[name] for name in self.input_names}).logits.float()
            mask = encoded["attention_mask"].bool()  # padded positions' logits are never read
            difference = (logits - expected).abs()
            difference = difference[mask] if difference.dim() == 3 else difference
            self.max_logit_difference = max(self.max_logit_difference, float(difference.max()) if difference.numel() else 0.0)
            self.reference_seconds += time.perf_counter() - began
        return torch.softmax(logits.float(), dim=-1)


__all__ = ["ONNX_MODEL_FILE", "OnnxPredictor", "write_onnx"]
