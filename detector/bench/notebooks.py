"""`vigil bench notebooks`: each notebook of `notebooks/` run top to bottom in a fresh Jupyter
kernel (nbclient, ipykernel: the development extras), timed (the target: each under 60 s). The
tests run the notebooks through `execute` too, and check what they show."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class NotebookRun:
    name: str
    seconds: float
    code_cells: int
    images: int  # PNG outputs


def execute(path: Path, timeout_s: float = 300.0) -> tuple[Any, float]:
    """Run the notebook at `path` in a fresh `python3` kernel, its own folder the working
    directory; the executed notebook (nbformat) and the seconds it took. A cell that raises
    raises `nbclient.exceptions.CellExecutionError` with its traceback."""
    try:
        import nbclient
        import nbformat
    except ImportError as exc:  # pragma: no cover - the dev extras are missing
        raise RuntimeError("running notebooks needs nbclient, nbformat and ipykernel: "
                           "pip install -e '.[dev]'") from exc
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=int(timeout_s), kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb, time.perf_counter() - start


def bench_notebooks(folder: Path) -> list[NotebookRun]:
    """Every `*.ipynb` of `folder`, executed and timed, in name order."""
    runs = []
    for path in sorted(folder.glob("*.ipynb")):
        nb, took = execute(path)
        code = [c for c in nb.cells if c.cell_type == "code"]
        images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
        runs.append(NotebookRun(path.name, took, len(code), images))
    return runs
