"""`make bench`: the kit's speed and accuracy claims, measured side by side in one run.

    python scripts/bench.py [SECTION ...]      sections: load scratch cnn pipeline (default: all)

Needs the real competition data (`make download` or `kit download --from ZIP`). Each
section is a module `scripts/bench_<section>.py` with a `run() -> dict` function; results
are printed and written to bench/results/<section>.json.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ["load", "scratch", "cnn", "pipeline"]


def main(argv: list[str]) -> int:
    chosen = argv or SECTIONS
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    sys.path.insert(0, str(HERE))
    out_dir = HERE.parent / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        print(f"\n=== bench: {name}")
        result = importlib.import_module(f"bench_{name}").run()
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
