"""Import the modules of bench/ (one directory up) from the scripts in bench/realistic/.

bench/ has its own ``gen_zone.py`` and ``gen_queries.py``, which its modules import by
those bare names, and so do the scripts here for theirs. ``bench_module`` imports a bench/
module with bench/ first on the path and keeps its imports out of ``sys.modules`` under
the bare names, so both sets of modules can be used in one process.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent.parent
SHARED_NAMES = ("gen_zone", "gen_queries")  # present in both directories


def bench_module(name: str) -> ModuleType:
    """bench/<name>.py as a module (imported once, kept as ``bench.<name>``)."""
    key = f"bench.{name}"
    if key in sys.modules:
        return sys.modules[key]
    ours = {m: sys.modules.pop(m) for m in SHARED_NAMES if m in sys.modules}
    sys.path.insert(0, str(BENCH_DIR))
    try:
        module = importlib.import_module(name)
        sys.modules[key] = sys.modules.pop(name)
        for m in SHARED_NAMES:
            if m in sys.modules:
                sys.modules[f"bench.{m}"] = sys.modules.pop(m)
    finally:
        sys.path.remove(str(BENCH_DIR))
        sys.modules.update(ours)
    return module
