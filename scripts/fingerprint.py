"""The sha256 of what the kit writes, for showing a refactor changed no output (run it before
and after, on one machine, and compare).

    python scripts/fingerprint.py [--keep DIR]

On the fixture competition (scikit-learn's digits, no ../shared needed), in a fresh temporary
folder: `kit download`, a tiny `kit train scratch`, a tiny `kit train cnn` (TensorFlow), `kit
ensemble` of the two, `kit predict`. Prints one line per output: the sha256 of each run's
val_proba.npy and test_proba.npy, and of the submission CSV's bytes. File names carry the time,
so only contents are hashed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SCRATCH = ["train", "scratch", "--epochs", "2", "--hidden", "32", "--quiet"]
CNN = ["train", "cnn", "--width", "4", "--epochs", "2", "--max-train", "256", "--quiet"]


def kit(env: dict, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "kit", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"kit {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="kit-fingerprint-"))
    env = {**os.environ, "KIT_COMPETITION": "digit-recognizer-fixture", "KIT_CACHE_DIR": str(root / "cache")}
    env.update({f"KIT_{d.upper()}_DIR": str(root / d) for d in ("data", "runs", "submissions", "reports")})
    env.pop("KERAS_BACKEND", None)
    kit(env, "fixture", "--out", str(root / "fixture"))
    kit(env, "download", "--from", str(root / "fixture" / "digit-recognizer-fixture.zip"))
    kit(env, *SCRATCH)
    kit(env, *CNN)
    kit(env, "ensemble")
    kit(env, "predict")
    for run in sorted((root / "runs").iterdir()):
        for name in ("val_proba.npy", "test_proba.npy"):
            if (run / name).exists():
                print(f"{sha(run / name)}  {run.name.split('-')[0]}/{name}")
    for csv in sorted((root / "submissions").glob("*.csv")):
        print(f"{sha(csv)}  submission.csv")


if __name__ == "__main__":
    main()
