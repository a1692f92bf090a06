"""The kit on machines other than Linux: it imports where `fcntl` does not exist (Windows), and
its lock (kit.io.exclusive, through filelock) is released by the OS when its holder is killed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from kit import io

NO_FCNTL = textwrap.dedent("""
    import importlib, os, pkgutil, sys
    from pathlib import Path

    # filelock picks its platform's primitive (fcntl here, LockFileEx on Windows) before the
    # block: what must not reach for fcntl is the kit
    import filelock

    class NoFcntl:
        def find_spec(self, name, path=None, target=None):
            if name == "fcntl":
                raise ModuleNotFoundError("No module named 'fcntl'", name="fcntl")  # as on Windows
            return None

    sys.modules.pop("fcntl", None)
    sys.meta_path.insert(0, NoFcntl())

    import kit.cli

    for m in pkgutil.walk_packages(kit.__path__, "kit."):
        if m.name != "kit.__main__":  # importing it runs the CLI
            importlib.import_module(m.name)  # the modules the CLI imports inside its commands

    from kit import runs, training
    from kit.errors import KitError

    print(os.getpid())
    run = runs.create("scratch", 0, root=Path(sys.argv[1]))
    with training.one_writer(run):
        try:
            with training.one_writer(run):
                pass
        except KitError as e:
            print(e)
    with training.one_writer(run):  # released: taken again
        print("taken again")
""")


def test_the_kit_and_its_cli_import_and_lock_a_run_without_fcntl(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", NO_FCNTL, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    pid, refused, taken = result.stdout.splitlines()
    (run,) = tmp_path.iterdir()
    # a second writer is refused naming the holder (`python -c ... ROOT` has argv ['-c', ROOT])
    assert refused == (
        f"{run} is being trained by process {pid} (-c {tmp_path}); "
        f"wait for it to finish (or stop it), then resume it"
    )
    assert taken == "taken again"


HOLD = textwrap.dedent("""
    import sys, time
    from kit import io
    with io.exclusive(sys.argv[1], wait=False):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_killed_holder_leaves_the_lock_free(tmp_path):
    lock = tmp_path / "run" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(io.LockHeld) as e, io.exclusive(lock, wait=False):
            pass
        assert e.value.holder == f"process {holder.pid} (-c {lock})"

        taken = threading.Event()

        def waiter():
            with io.exclusive(lock):  # wait=True: blocks until the holder is gone
                taken.set()

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert not taken.wait(0.3)
        holder.kill()  # SIGKILL on POSIX: no finally, no atexit, as a crash
        holder.wait()
        thread.join(timeout=10)
        assert taken.is_set()
    finally:
        holder.kill()
        holder.wait()
    with io.exclusive(lock, wait=False):
        pass
    assert lock.read_text() == ""  # the file stays, empty, and blocks nothing
