"""Progress bars for long runs: a widget in Jupyter, a bar in a terminal, nothing in CI logs or other
non-interactive output (``XTERRAMIND_PROGRESS=1`` forces it on, ``0`` off)."""

from __future__ import annotations

import os
import sys


def wanted(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    forced = os.environ.get("XTERRAMIND_PROGRESS")
    if forced is not None:
        return forced not in ("0", "false", "no", "")
    return "ipykernel" in sys.modules or sys.stderr.isatty()


def bar(total: int, description: str, progress: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="region", disable=not wanted(progress), dynamic_ncols=True)
