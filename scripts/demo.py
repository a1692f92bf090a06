"""`make demo`: the whole kit flow offline, on a fresh clone, with no Kaggle account.

    python scripts/demo.py [--out DIR] [--fast]

Builds the small fixture competition (scikit-learn's digits), starts the local Kaggle
emulator in this process with demo credentials, then runs the real `kit` CLI as
subprocesses, pointed at the emulator (the official kaggle client, unchanged) and at
folders under .cache/demo/ (git-ignored; wiped at the start so every demo is fresh):

    download -> train scratch -> train cnn -> ensemble -> predict -> submit (score)
    -> scores (table + plot) -> leaderboard -> report -> emulator stopped

Training budgets are small (a few epochs, narrow nets) so the demo takes a few minutes on
2 CPU cores; the point is the plumbing, not the score.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit import fixture  # noqa: E402
from kit.emulator import server  # noqa: E402

DEMO = ROOT / ".cache" / "demo"
MARKER = ".kit-demo"
COMPETITION = "digit-recognizer-fixture"
# The demo's training budgets: enough to see both models learn, small enough for minutes.
SCRATCH_ARGS = ["--epochs", "20"]
# the reference CNN learns fastest from the fixture's 1,080 training images
CNN_ARGS = ["--preset", "reference", "--epochs", "8", "--width", "16"]
# --fast (the test of this script): the plumbing only.
FAST_SCRATCH_ARGS = ["--epochs", "2", "--hidden", "32"]
FAST_CNN_ARGS = ["--preset", "reference", "--epochs", "1", "--width", "4"]
# Other teams on the emulated leaderboard, so `kit leaderboard` has something to rank against.
TEAMS = [("lecun", 0.99700), ("ciresan", 0.99100), ("nielsen", 0.98000), ("logreg-baseline", 0.92000)]


def kit_bin() -> list[str]:
    """The CLI of this checkout: .venv/bin/kit beside the interpreter, else `python -m kit.cli`."""
    exe = Path(sys.executable).parent / "kit"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kit.cli"]


def step(n: int, title: str) -> None:
    print(f"\n\033[1m== {n}. {title}\033[0m", flush=True)


def run(env: dict, *args: str) -> None:
    cmd = [*kit_bin(), *args]
    print("$ kit " + " ".join(args), flush=True)
    result = subprocess.run(cmd, env=env, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"demo stopped: `kit {' '.join(args)}` exited with status {result.returncode}")


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="The whole kit flow offline against a local Kaggle emulator."
    )
    parser.add_argument("--out", type=Path, default=DEMO, help=f"demo folder, wiped first [default: {DEMO}]")
    parser.add_argument("--fast", action="store_true", help="tiny training budgets (for the test)")
    args = parser.parse_args(argv)
    demo = args.out.resolve()
    scratch_args, cnn_args = (FAST_SCRATCH_ARGS, FAST_CNN_ARGS) if args.fast else (SCRATCH_ARGS, CNN_ARGS)

    t0 = time.monotonic()
    if demo.exists() and any(demo.iterdir()):
        if not (demo / MARKER).exists():  # never wipe a folder this script did not make
            raise SystemExit(f"{demo} exists and is not a demo folder (no {MARKER}); choose another --out")
        shutil.rmtree(demo)
    demo.mkdir(parents=True, exist_ok=True)
    (demo / MARKER).write_text("made by scripts/demo.py; wiped by its next run\n")

    step(1, "build the fixture competition (scikit-learn digits as 28x28 Kaggle CSVs)")
    comp = fixture.build(demo / "fixture")
    print(comp)

    step(2, "start the local Kaggle emulator (demo credentials, nothing leaves this machine)")
    kaggle_config = demo / "kaggle-config"  # empty: the user's real ~/.kaggle is never read
    kaggle_config.mkdir()
    with server.Emulator(
        comp / f"{COMPETITION}.zip", comp / "answers.csv", slug=COMPETITION, scoring_delay_s=1.0, teams=TEAMS
    ) as emu:
        print(f"emulator at {emu.url}, user {emu.username!r}")
        env = {
            **os.environ,
            **emu.env(kaggle_config),
            "KIT_COMPETITION": COMPETITION,
            "KIT_DATA_DIR": str(demo / "data"),
            "KIT_RUNS_DIR": str(demo / "runs"),
            "KIT_SUBMISSIONS_DIR": str(demo / "submissions"),
            "KIT_REPORTS_DIR": str(demo / "reports"),
            "KIT_CACHE_DIR": str(demo / "cache"),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }  # TensorFlow's C++ chatter

        step(3, "download and verify the data (the real kaggle client, against the emulator)")
        run(env, "download")
        step(4, "train the from-scratch NumPy network (small budget)")
        run(env, "train", "scratch", *scratch_args)
        step(5, "train the Keras CNN (small budget)")
        run(env, "train", "cnn", *cnn_args)
        step(6, "ensemble the two (weights fitted on the validation split)")
        run(env, "ensemble")
        step(7, "write a timestamped submission CSV from the ensemble")
        run(env, "predict")
        step(8, "upload it and wait for the public score")
        run(env, "submit")
        step(9, "the submission ledger, with a plot of validation vs leaderboard score")
        run(env, "scores", "--sync", "--plot")
        step(10, "our rank on the (emulated) leaderboard")
        run(env, "leaderboard")
        step(11, "HTML report of the runs and submissions")
        run(env, "report")
        step(12, "stop the emulator")
        print(f"emulator served {len(emu.requests)} requests and scored {len(emu.submissions)} submission(s)")
    print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; everything it wrote is under {demo}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
