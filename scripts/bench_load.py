"""Bench section `load`: CSV parse vs binary-cache hit, and the cost of verification.

Needs the competition installed in the data folder (`make download`). Times, in seconds,
best of REPEATS (the minimum is the least disturbed by other processes):

    install_s      `kit download --from <raw folder> --force` into a scratch data folder:
                   copy, verify all three files, hash, manifest, cache
    noop_s         the same again without --force: the "already verified" path
    parse_s        data.parse(): read + verify train.csv and test.csv (a cache miss)
    cache_hit_s    data.load() with the cache in place (a cache hit)
    is_installed_deep_s   data.is_installed(): re-hash the three CSVs against the manifest
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from kit import config, data

REPEATS = 3


def _best(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run() -> dict:
    if not data.is_installed(deep=False):
        raise SystemExit(f"bench load: no verified data in {config.raw_dir()}; run `make download` first")
    raw = config.raw_dir()
    quiet = lambda s: None  # noqa: E731
    with tempfile.TemporaryDirectory() as scratch:
        old = os.environ.get("KIT_DATA_DIR")
        os.environ["KIT_DATA_DIR"] = str(Path(scratch) / "data")
        try:
            install_s = _best(lambda: data.install(raw, force=True, echo=quiet), repeats=1)
            noop_s = _best(lambda: data.install(raw, echo=quiet))
        finally:
            if old is None:
                del os.environ["KIT_DATA_DIR"]
            else:
                os.environ["KIT_DATA_DIR"] = old
    parse_s = _best(data.parse)
    data.load()  # make sure the cache exists
    cache_hit_s = _best(data.load, repeats=10)
    deep_s = _best(data.is_installed)
    return {
        "competition": config.competition().slug,
        "csv_mb": round(sum((raw / n).stat().st_size for n in data.FILES) / 2**20, 1),
        "install_s": round(install_s, 3),
        "noop_s": round(noop_s, 3),
        "parse_s": round(parse_s, 3),
        "cache_hit_s": round(cache_hit_s, 4),
        "cache_speedup": round(parse_s / cache_hit_s, 1),
        "is_installed_deep_s": round(deep_s, 3),
    }
