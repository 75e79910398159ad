"""Exports as the CLI, the magics and `Run.export` meet them: start the export job, find an export again,
say what it is, and whether it may be published. Never imports torch; the job is
`ftkit.engine.export`, run in a worker process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import FtkitError
from .process.jobs import run_job
from .runstore.layout import EXPORT_RECORD_FILE, EXPORTS_DIR

if TYPE_CHECKING:
    from .runs import Run


def export_run(run: "Run", format: str | None = None, quant: str | None = None, checkpoint: str | int | None = None,
               output: str | Path | None = None, ollama: bool = False, examples: int = 200) -> dict[str, Any]:
    """Export and verify one checkpoint in a worker process (this one waits); returns the export's record."""
    options = [*(["--format", format] if format else []), *(["--quant", quant] if quant else []),
               *(["--checkpoint", str(checkpoint)] if checkpoint is not None else []),
               *(["--export-path", str(Path(output).expanduser().resolve())] if output else []),
               *(["--ollama"] if ollama else []), "--examples", str(int(examples))]
    return run_job(run, "export", *options)


def find_export(run: "Run", ref: str | Path) -> tuple[Path, dict[str, Any]]:
    """(folder, record) of an export: a folder or file path, a folder name under RUN/exports, or an export id."""
    candidates = [Path(ref).expanduser(), run.dir / EXPORTS_DIR / str(ref)]
    for candidate in candidates:
        folder = candidate.parent if candidate.is_file() else candidate
        if (folder / EXPORT_RECORD_FILE).is_file():
            return folder, json.loads((folder / EXPORT_RECORD_FILE).read_text(encoding="utf-8"))
    for event in run.store.exports(run.id):
        if event.get("id") == str(ref) and event.get("path"):
            return find_export(run, event["path"])
    made = sorted(p.name for p in (run.dir / EXPORTS_DIR).glob(f"*/{EXPORT_RECORD_FILE}"))
    raise FtkitError(f"run {run.id} has no export '{ref}'" +
                     (f"; its exports: {', '.join(Path(m).parent.name for m in made)}" if made else
                      "; make one with `ftkit export RUN`"))


def check_publishable(record: dict[str, Any], allow_unverified: bool = False) -> None:
    """An export that failed verification is not published unless the user says so."""
    check = record.get("verification") or {}
    if not check.get("passed") and not allow_unverified:
        raise FtkitError(f"export {record.get('file')} failed verification: it agreed with the fine-tuned model on "
                         f"{check.get('agreement', 0):.1%} of {check.get('examples', 0)} examples (threshold "
                         f"{check.get('threshold', 0):.0%}); push it anyway with --allow-unverified")


def export_summary(record: dict[str, Any]) -> str:
    """One paragraph for people: where the export is, how big, and how it verified."""
    check = record["verification"]
    kind = f"GGUF {record['quant']}" if record["format"] == "gguf" else "ONNX"
    scores = ", ".join(f"{name} {check['model'][name]:.1%} → {check['export'][name]:.1%}" for name in check["model"])
    logits = f", largest logit difference {check['max_logit_difference']:.1e}" if "max_logit_difference" in check else ""
    verdict = "verified" if check["passed"] else "FAILED verification (kept; `ftkit push` refuses it)"
    return (f"{kind} export of {record['checkpoint']}: {record['path']} ({record['size'] / 1e6:.1f} MB, "
            f"{record['seconds']:.0f} s)\n{verdict}: {check['agreement']:.1%} agreement with the fine-tuned model on "
            f"{check['examples']} {check['split']} examples (threshold {check['threshold']:.0%})"
            f"{'; ' + scores if scores else ''}{logits}")


__all__ = ["check_publishable", "export_run", "export_summary", "find_export"]
