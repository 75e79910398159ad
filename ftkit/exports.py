"""Exports as the CLI, the magics and `Run.export` meet them: start the export job, find an export again,
say what it is, and whether it may be published. Never imports torch; the job is
`ftkit.engine.export`, run in a worker process.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

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




# What a checkpoint holds only to resume training; a published model leaves it out.
# What a push of a checkpoint uploads, and nothing else: the model, its tokenizer and its card. Never the
# training state (training_args.bin holds every TrainingArguments field), ftkit's own records or the run's files.
MODEL_FILES = ["README.md", "config.json", "generation_config.json", "*.safetensors", "pytorch_model*.bin",
               "adapter_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model", "chat_template.jinja",
               "preprocessor_config.json"]


def push_to_hub(run: "Run", repo_id: str, checkpoint: str | None = None, export: str | None = None,
                allow_unverified: bool = False, private: bool = True,
                announce: Callable[[Path, list[str]], None] | None = None) -> tuple[str, Path]:
    """`HfApi.upload_folder`, the call `push_to_hub` makes, on a checkpoint's model files (`MODEL_FILES`) with its
    model card, or on an export's own files (refused when it failed verification, unless ``allow_unverified``);
    the repository is created private unless ``private`` is off. ``announce(folder, files)`` hears what will be
    uploaded before anything is. Returns (url, folder)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from .engine.card import CARD_FILE, write_run_card

    if export:
        folder, record = find_export(run, export)
        check_publishable(record, allow_unverified)
        patterns = list(record["files"])  # a .gguf written into a shared folder: ours only
    else:
        folder, patterns = run.checkpoint_path(checkpoint), MODEL_FILES
        if not (folder / CARD_FILE).is_file():
            write_run_card(run.store, run.id, run.config, folder if checkpoint else None)
    files = publishable(folder, patterns)
    if announce is not None:
        announce(folder, files)
    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, allow_patterns=files,
                          commit_message=f"ftkit run {run.id} ({run.name}): {folder.name}")
    except OfflineModeIsEnabled:
        raise FtkitError(f"cannot push to the Hugging Face hub: offline (HF_HUB_OFFLINE is set). The model and its "
                         f"card are in {folder}; push when online, or copy that folder") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise FtkitError(f"could not push to '{repo_id}' on the Hugging Face hub ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Logged in? `hf auth login`, or "
                         f"set HF_TOKEN. The model and its card are in {folder}") from None
    return str(url), folder


def publishable(folder: Path, patterns: list[str]) -> list[str]:
    """The files under ``folder`` (relative, sorted) that ``patterns`` allow: exactly what a push uploads."""
    found = (path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return sorted(name for name in found if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns))


__all__ = ["MODEL_FILES", "check_publishable", "export_run", "export_summary", "find_export", "publishable", "push_to_hub"]
