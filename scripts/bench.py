"""`make bench`: the kit's speed and accuracy claims, measured, recorded, rendered.

    python scripts/bench.py [SECTION ...]      sections: load scratch cnn pipeline throughput gpu (default: all but gpu)

Needs the real competition data (`make download` or `kit download --from ZIP`). Each section is
a module `scripts/bench_<section>.py` with a `run() -> dict` function. Its dict is printed and
written, with the machine, library versions and commit around it (scripts/benchlib.py), to
docs/bench/<section>-<UTC>.json; then docs/benchmarks.md is rendered again from every result
file there (scripts/bench_report.py). Result files are committed: they are the numbers' record.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ["load", "scratch", "cnn", "pipeline", "throughput", "gpu"]
DEFAULT = SECTIONS[:-1]  # `gpu` only where asked for: it measures nothing on a CPU


def main(argv: list[str]) -> int:
    chosen = argv or DEFAULT
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    sys.path.insert(0, str(HERE))
    import bench_report
    import benchlib

    for name in chosen:
        print(f"\n=== bench: {name}")
        env = benchlib.environment()
        result = importlib.import_module(f"bench_{name}").run()
        print(json.dumps(result, indent=2, default=str))
        print(f"wrote {benchlib.write_result(name, result, env)}")
    print(f"wrote {bench_report.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
