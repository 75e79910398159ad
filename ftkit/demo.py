"""`make demo`: run the quickstart notebook headless and print its evaluation report.

The executed copy is saved next to the runs so it can be opened in JupyterLab afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPORT_TAG = "report"


def text_outputs(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") == "execute_result" and "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"])
    return "".join(parts).rstrip()


def main(argv: list[str] | None = None) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    parser = argparse.ArgumentParser(prog="python -m ftkit.demo", description=__doc__)
    parser.add_argument("notebook", nargs="?", default=str(Path(__file__).resolve().parents[1] / "notebooks" / "01_quickstart_ner.ipynb"))
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: none)")
    args = parser.parse_args(argv)
    path = Path(args.notebook)
    notebook = nbformat.read(path, as_version=4)
    print(f"executing {path} (FTKIT_SMOKE={os.environ.get('FTKIT_SMOKE', '0')}) ...", flush=True)
    started = time.time()
    client = NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        print(f"the notebook failed:\n{exc}", file=sys.stderr)
        return 1
    finally:
        out = Path(os.environ.get("FTKIT_RUNS_DIR", "ftkit-runs")) / f"{path.stem}.executed.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out)
        print(f"executed notebook saved to {out}")
    cells = [c for c in notebook.cells if REPORT_TAG in c.get("metadata", {}).get("tags", [])] or notebook.cells[-3:]
    print("\n\n".join(filter(None, (text_outputs(c) for c in cells))))
    print_reports(since=started)
    return 0


def print_reports(since: float) -> None:
    """The test-split report of every run the notebook started."""
    from .tasks.scoring import report_table
    from .runstore import RunStore

    store = RunStore()
    for summary in reversed(store.list_runs()[0]):
        if (summary["created"] or 0) < since:
            continue
        detail = store.get(summary["id"])
        test = detail["metrics"].get("test")
        print(f"\n== {detail['name']} ({detail['id']}, {detail['status']}) ==")
        print(report_table(test, detail["task"]) if test else f"no test metrics ({detail['error'] or 'no test split'})")


if __name__ == "__main__":
    sys.exit(main())
