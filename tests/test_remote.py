"""`kit remote` (kit.remote): the generated kernel script run here as Kaggle
would run it (the kaggle client and tenacity not importable), its output verified and installed
as ordinary runs, and refused when its data identity or shapes are wrong."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kit import config, data, ensemble, groups, metrics, models, runs
from kit.errors import KitError
from kit.kaggle import client
from kit.kaggle import kernels as kaggle_kernels
from kit.remote import entry, install, jobs
from kit.remote import kernel as kernel_mod
from kit.remote import run as remote_run

BLOCKED = ("kaggle", "kagglesdk", "tenacity")
# Kaggle's image has no internet and we import nothing we do not need: these are made
# unimportable before the generated script runs
RUN_BLOCKED = (
    "import runpy, sys\n"
    f"for name in {BLOCKED!r}:\n"
    "    sys.modules[name] = None\n"
    "sys.argv = [sys.argv[1]]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
TINY = {"hidden": (16,), "epochs": 1}


def _job(seeds=(1, 2), kernels=1, accelerator="none", **overrides):
    model = models.get("scratch")
    cfg = remote_run.remote_config(model, None, {**TINY, **overrides})
    return remote_run.new_job("scratch", list(seeds), kernels, accelerator, cfg, "demo")


def _kaggle_input(tmp_path: Path, fixture_competition: Path) -> Path:
    """An input folder laid out like Kaggle's: <input>/<slug>/{train,test,sample_submission}.csv."""
    slug = config.competition().slug
    dest = tmp_path / "input" / slug
    with zipfile.ZipFile(fixture_competition / f"{slug}.zip") as z:
        z.extractall(dest)
    return tmp_path / "input"


def _run_kernel(job, kernel, tmp_path, fixture_competition, block=BLOCKED) -> tuple[int, str, Path]:
    """Run the kernel's generated script as the emulator does; (exit status, log, working)."""
    folder = kernel_mod.write_kernel(job, kernel)
    working = tmp_path / f"working-{kernel.slug}"
    working.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KIT_KAGGLE_INPUT": str(_kaggle_input(tmp_path, fixture_competition)),
        "KIT_KAGGLE_WORKING": str(working),
    }
    code = RUN_BLOCKED.replace(repr(BLOCKED), repr(block))
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder / kernel_mod.CODE_FILE)],
        cwd=working,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr, working


def _as_downloaded(job, kernel, working: Path) -> Path:
    """The kernel's working folder copied to where kernel_output puts it."""
    out = jobs.work_dir(job, kernel) / "out"
    shutil.copytree(working, out)
    return out


def test_seeds_parse_and_split():
    assert remote_run.parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert remote_run.parse_seeds("0,3,7") == [0, 3, 7]
    assert remote_run.parse_seeds("2-4,9") == [2, 3, 4, 9]
    for bad in ("", "a", "3,3", "-1"):
        with pytest.raises(KitError, match="--seeds"):
            remote_run.parse_seeds(bad)
    assert remote_run.split_seeds(list(range(1, 16)), 3) == [
        [1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10],
        [11, 12, 13, 14, 15],
    ]
    assert remote_run.split_seeds([1, 2], 3) == [[1], [2]]


def test_remote_recipe_is_the_gpu_budget_in_float32_and_every_option_wins():
    cnn = models.get("cnn")
    cfg = remote_run.remote_config(cnn, None, {"epochs": None})
    assert (cfg.preset, cfg.epochs, cfg.mixed_precision) == ("best", 45, False)
    cfg = remote_run.remote_config(cnn, "default", {"epochs": 3, "mixed_precision": True})
    assert (cfg.preset, cfg.epochs, cfg.mixed_precision) == ("default", 3, True)
    with pytest.raises(KitError, match="--epochs must be at least 1"):
        remote_run.remote_config(cnn, None, {"epochs": 0})


def test_metadata_is_a_private_script_kernel_with_the_competition(fixture_data):
    job = _job(seeds=[1, 2, 3], kernels=2, accelerator=remote_run.GPU)
    meta = kernel_mod.metadata(job, job.kernels[0])
    assert meta["id"] == f"demo/kit-{job.name}-k1" and meta["title"] == f"kit-{job.name}-k1"
    assert (meta["language"], meta["kernel_type"], meta["code_file"]) == (
        "python",
        "script",
        kernel_mod.CODE_FILE,
    )
    assert meta["competition_sources"] == ["digit-recognizer-fixture"]
    assert (meta["machine_shape"], meta["enable_gpu"], meta["enable_internet"], meta["is_private"]) == (
        "NvidiaTeslaT4",
        True,
        False,
        True,
    )
    assert "machine_shape" not in kernel_mod.metadata(_job(), _job().kernels[0])
    assert [k.seeds for k in job.kernels] == [[1, 2], [3]]


def test_kernel_imports_need_neither_the_kaggle_client_nor_tenacity():
    code = (
        "import sys\nimport kit.remote.entry, kit.training, kit.models.scratch, kit.models.cnn, kit.data\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_generated_script_trains_the_seeds_without_kaggle_or_tenacity(
    fixture_data, fixture_competition, tmp_path
):
    job = _job(seeds=[1, 2])
    kernel = job.kernels[0]
    status, log, working = _run_kernel(job, kernel, tmp_path, fixture_competition)
    assert status == 0, log
    assert "kit-src-" in log  # the kit the script carries, not the one installed here
    assert "scratch best epoch 1/1" in log  # a line per epoch
    assert log.strip().splitlines()[-1].startswith("kit remote: done: 2 run(s)")
    made = sorted(p.name for p in (working / "runs").iterdir())
    assert len(made) == 2 and all(n.startswith("scratch-") for n in made)
    assert json.loads((working / "kit-kernel.json").read_text())["runs"] == sorted(
        made, key=lambda n: n.endswith("s2")
    )


def test_a_missing_module_is_one_clear_line(fixture_data, fixture_competition, tmp_path):
    job = _job(seeds=[1])
    status, log, _ = _run_kernel(job, job.kernels[0], tmp_path, fixture_competition, (*BLOCKED, "pandas"))
    assert status == entry.EXIT_MISSING
    assert "kit remote: cannot run: this image lacks the Python module(s) pandas" in log
    assert "Traceback" not in log


def test_other_data_on_kaggle_stops_before_training(fixture_data, fixture_competition, tmp_path):
    job = _job(seeds=[1])
    job.identity["data_checksum"] = "not-this-data"
    status, log, working = _run_kernel(job, job.kernels[0], tmp_path, fixture_competition)
    assert status == 1 and "is not the data the job was made with (data_checksum" in log
    assert not (working / "runs").exists()


@pytest.fixture
def kernel_output(fixture_data, fixture_competition, tmp_path):
    """A finished 2-seed kernel's output, as downloaded: (job, kernel, out folder)."""
    job = _job(seeds=[1, 2])
    kernel = job.kernels[0]
    kernel.version, kernel.state = 1, "complete"
    status, log, working = _run_kernel(job, kernel, tmp_path, fixture_competition)
    assert status == 0, log
    return job, kernel, _as_downloaded(job, kernel, working)


def _install(job, kernel, out):
    folders = install.verify_output(out, kernel, job.model, install.local_identity())
    summary = json.loads((out / "kit-kernel.json").read_text())
    return [install.install_run(f, install.provenance(job, kernel, f, summary)) for f in folders]


def test_output_is_verified_and_installed_as_ordinary_runs(kernel_output):
    from click.testing import CliRunner

    from kit.cli import cli

    job, kernel, out = kernel_output
    installed = _install(job, kernel, out)
    assert [r.name for r in installed] == [p.name for p in sorted((out / "runs").iterdir())]
    for run in installed:
        assert run.finished and run.path.parent == config.runs_dir()
        prov = json.loads(run.file(install.PROVENANCE).read_text())
        assert (prov["kernel"], prov["version"], prov["accelerator"]) == (kernel.ref, 1, "none")
        assert prov["remote_wall_time_s"] > 0 and prov["gpu"] is None
    assert [r.name for r in runs.all_runs(model="scratch")] == [r.name for r in installed]
    # the same run again: nothing new; another run of that name is never overwritten
    assert _install(job, kernel, out)[0].path == installed[0].path
    kernel.version = 2
    again = _install(job, kernel, out)
    assert again[0].name == installed[0].name + "-2"
    result = CliRunner().invoke(cli, ["ensemble", installed[0].name, installed[1].name])
    assert result.exit_code == 0, result.output


def _corrupt_checksum(out: Path) -> str:
    run = sorted((out / "runs").iterdir())[1]
    m = json.loads((run / "metrics.json").read_text())
    m["data_checksum"] = "0000"
    (run / "metrics.json").write_text(json.dumps(m))
    return f"{run.name}: data_checksum '0000', the local data's is"


def _corrupt_shape(out: Path) -> str:
    run = sorted((out / "runs").iterdir())[0]
    np.save(run / "test_proba.npy", np.full((5, 10), 0.1, np.float32))
    return f"{run.name}: test_proba.npy has shape (5, 10)"


def _corrupt_values(out: Path) -> str:
    run = sorted((out / "runs").iterdir())[0]
    p = np.load(run / "val_proba.npy")
    p[0, 0] = np.nan
    np.save(run / "val_proba.npy", p)
    return "val_proba.npy holds values that are not probabilities"


def _drop_a_seed(out: Path) -> str:
    shutil.rmtree(sorted((out / "runs").iterdir())[1])
    return "runs for seeds [1], expected [1, 2]"


@pytest.mark.parametrize("corrupt", [_corrupt_checksum, _corrupt_shape, _corrupt_values, _drop_a_seed])
def test_wrong_output_is_refused_and_nothing_installed_from_that_kernel(kernel_output, corrupt):
    job, kernel, out = kernel_output
    said = corrupt(out)
    with pytest.raises(KitError) as err:
        _install(job, kernel, out)
    assert str(err.value).startswith(f"kernel {kernel.ref}: output refused, nothing installed from it: ")
    assert said in str(err.value)
    assert runs.all_runs(finished=False) == []  # runs/remote holds job records, not runs


def test_job_record_is_written_before_the_first_push(fixture_data, monkeypatch):
    seen = []

    def push(folder):
        seen.append(json.loads((jobs.jobs_dir() / f"{job_name()}.json").read_text()))
        raise KitError("stop here")

    def job_name():
        return sorted(jobs.jobs_dir().glob("*.json"))[0].stem

    monkeypatch.setattr(client, "username", lambda: "demo")
    monkeypatch.setattr(kaggle_kernels, "push_kernel", push)
    with pytest.raises(KitError, match="stop here"):
        remote_run.train("scratch", [1, 2, 3], kernels=2, accelerator="none", overrides=dict(TINY))
    record = seen[0]
    assert [k["seeds"] for k in record["kernels"]] == [[1, 2], [3]]
    assert record["kernels"][0]["state"] == "pushing" and record["kernels"][1]["state"] == "pending"
    assert record["identity"] == {k: install.local_identity()[k] for k in ("data_checksum", "split_hash")}
    assert record["config"]["epochs"] == 1 and record["config"]["hidden"] == [16]
    after = jobs.load()
    assert after.kernels[0].state == "failed" and "stop here" in after.kernels[0].failure


# A record as the dict-based kit.remote wrote it (runs/remote/<job>.json, before the Job and
# Kernel dataclasses): each kernel's optional keys present only when set, version null until
# pushed. Taken from real records of an emulated job (the config cut short: it is opaque here).
OLD_RECORD = {
    "accelerator": "NvidiaTeslaT4",
    "competition": "digit-recognizer-fixture",
    "config": {"epochs": 1, "hidden": [16], "preset": "best", "seed": 0},
    "created_utc": "2026-12-04T20:40:13+00:00",
    "identity": {"data_checksum": "8890ab3cf89d6cd5", "split_hash": "5287e1ebb2e62f68"},
    "job": "scratch-20261204-204013",
    "kernels": [
        {
            "ended_utc": "2026-12-04T20:40:15+00:00",
            "pushed_utc": "2026-12-04T20:40:13+00:00",
            "ref": "demo/kit-scratch-20261204-204013-k1",
            "runs": ["scratch-20261204-204014-s1"],
            "said_waiting": True,
            "seeds": [1],
            "slug": "kit-scratch-20261204-204013-k1",
            "state": "installed",
            "version": 1,
        },
        {
            "failure": "Kaggle refused the push of kit-scratch-20261204-204013-k2: Accelerator Quota Exceeded",
            "ref": "demo/kit-scratch-20261204-204013-k2",
            "runs": [],
            "seeds": [2, 3],
            "slug": "kit-scratch-20261204-204013-k2",
            "state": "held",
            "version": None,
        },
        {
            "ended_utc": "2026-12-04T20:40:20+00:00",
            "failure": "Process exited with code 1; log ends: CUDA error: out of memory",
            "pushed_utc": "2026-12-04T20:40:20+00:00",
            "ref": "demo/kit-scratch-20261204-204013-k3",
            "runs": [],
            "seeds": [4],
            "slug": "kit-scratch-20261204-204013-k3",
            "state": "failed",
            "version": 1,
        },
        {
            "ref": "demo/kit-scratch-20261204-204013-k4",
            "runs": [],
            "seeds": [5],
            "slug": "kit-scratch-20261204-204013-k4",
            "state": "pending",
            "version": None,
        },
    ],
    "model": "scratch",
    "n_test": 597,
    "n_val": 120,
    "state": "running",
}


def test_an_old_job_record_loads_and_is_written_back_byte_for_byte(isolated_dirs):
    path = jobs.jobs_dir() / f"{OLD_RECORD['job']}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(OLD_RECORD, indent=2, sort_keys=True) + "\n")  # as write_json wrote it
    before = path.read_bytes()
    job = jobs.load(OLD_RECORD["job"])
    assert (job.name, job.state, job.n_val, job.config["hidden"]) == (OLD_RECORD["job"], "running", 120, [16])
    k1, k2, k3, k4 = job.kernels
    assert (k1.state, k1.version, k1.runs, k1.said_waiting) == (
        "installed",
        1,
        ["scratch-20261204-204014-s1"],
        True,
    )
    assert (k2.state, k2.version, k2.pushed_utc, k2.seeds) == (jobs.HELD, None, None, [2, 3])
    assert k3.failure.startswith("Process exited") and k4.failure is None and k4.said_waiting is None
    assert job.group is None and all(k.members is None for k in job.kernels)  # a job of seeds
    assert job.to_json() == OLD_RECORD and jobs.Job.from_json(job.to_json()) == job
    jobs.save(job)
    assert path.read_bytes() == before
    k4.state, k4.failure = jobs.KernelState.HELD, "held"  # set, the key appears; cleared, it goes
    assert jobs.Kernel.from_json(k4.to_json()).failure == "held"
    k4.failure = None
    assert "failure" not in k4.to_json() and job.to_json()["kernels"][3]["state"] == "held"


def test_script_size_is_small():
    job = jobs.Job("j", "cnn", "none", "c", config={}, identity={}, n_val=0, n_test=0, created_utc="")
    text = kernel_mod.script(job, jobs.Kernel(slug="s", ref="u/s", seeds=[1]))
    assert len(text) < 400_000
    compile(text, "kit_remote.py", "exec")


# ----------------------------------------------------------------------------- through the emulator

SCRATCH_TINY = ["--hidden", "16", "--epochs", "1"]


@pytest.fixture
def emulated(kaggle_emulator, fixture_data, monkeypatch):
    """The emulator with its kernels service, the fixture installed locally, fast polling."""
    monkeypatch.setattr(remote_run, "POLL", remote_run.PollConfig(first_s=0.1, factor=1.5, max_s=0.5))
    return kaggle_emulator


def _kit(*args):
    from click.testing import CliRunner

    from kit.cli import cli

    return CliRunner().invoke(cli, list(args))


def _pushes(emu) -> int:
    return sum(1 for _, p in emu.requests if p.endswith("/SaveKernel"))


def _remote_train(*extra):
    return _kit("remote", "train", "scratch", "--seeds", "1-2", "--kernels", "2", *SCRATCH_TINY, *extra)


@pytest.mark.slow  # ~10 s: two kernels really train, then ensemble, predict, submit
def test_end_to_end_two_seeds_over_two_kernels_to_a_scored_submission(emulated):
    result = _remote_train("--accelerator", "none")
    assert result.exit_code == 0, result.output
    job = jobs.load()
    assert job.state == "complete" and [k.version for k in job.kernels] == [1, 1]
    installed = runs.all_runs(model="scratch")
    assert len(installed) == 2 and sorted(r.metrics["seed"] for r in installed) == [1, 2]
    for run in installed:
        prov = json.loads(run.file(install.PROVENANCE).read_text())
        assert prov["kernel"].startswith("demo/kit-scratch-") and prov["version"] == 1
    assert "installed scratch-" in result.output and "(seeds 2): running" in result.output  # the live view
    assert f"job {job.name} complete: 2 run(s) installed" in result.output
    assert _kit("ensemble", *(r.name for r in installed)).exit_code == 0
    assert _kit("predict").exit_code == 0
    submitted = _kit("submit")
    assert submitted.exit_code == 0, submitted.output
    assert "public score: " in submitted.output
    status = _kit("remote", "status")
    assert status.exit_code == 0 and f"{job.name}  complete" in status.output


@pytest.mark.slow  # ~10 s: two kernels really train, then ensemble, predict, submit
def test_ctrl_c_after_the_push_then_pull_installs_without_pushing_again(emulated, monkeypatch):
    emulated.queue_delay_s = 0.5

    def interrupt(job, echo=print, view=None):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(remote_run, "wait", interrupt)
        result = _remote_train("--accelerator", "none")
    assert result.exit_code == 1
    job = jobs.load()
    assert f"Reattach with: kit remote pull {job.name}" in result.output
    assert _pushes(emulated) == 2 and runs.all_runs(model="scratch") == []
    pulled = _kit("remote", "pull")
    assert pulled.exit_code == 0, pulled.output
    assert _pushes(emulated) == 2  # nothing pushed again
    assert len(runs.all_runs(model="scratch")) == 2
    again = _kit("remote", "pull", job.name)
    assert again.exit_code == 0 and "nothing left to do" in again.output
    assert len(runs.all_runs(model="scratch")) == 2


def test_a_failing_script_marks_the_job_failed_with_its_log_tail(emulated):
    emulated.fail("SaveKernel", "script_error", times=1, message="CUDA error: out of memory")
    result = _remote_train("--accelerator", "none")
    assert result.exit_code == 1
    assert "CUDA error: out of memory" in result.output
    assert "Process exited with code 1" in result.output
    job = jobs.load()
    assert job.state == "failed"
    states = sorted(k.state for k in job.kernels)
    assert states == ["failed", "installed"]  # the other kernel's runs are kept
    assert len(runs.all_runs(model="scratch")) == 1


def test_a_dropped_output_download_is_resumed(emulated):
    emulated.fail("/kernels-output/", "drop", times=1)
    result = _remote_train("--accelerator", "none")
    assert result.exit_code == 0, result.output
    assert "retrying in" in result.output  # the drop was seen, and the download resumed
    assert len(runs.all_runs(model="scratch")) == 2


@pytest.mark.slow  # ~5 s: the two kernels really train
def test_a_push_whose_answer_was_lost_is_not_pushed_twice(emulated):
    """Kaggle made the version but the answer never came back: the retry finds that version
    instead of pushing (and running) the kernel a second time."""
    emulated.fail("SaveKernel", "drop", times=1, after=True)
    result = _remote_train("--accelerator", "none")
    assert result.exit_code == 0, result.output
    assert _pushes(emulated) == 2  # one per kernel: the dropped one was not sent again
    job = jobs.load()
    assert job.state == "complete" and [k.version for k in job.kernels] == [1, 1]
    assert len(runs.all_runs(model="scratch")) == 2


def test_a_rejected_push_is_a_failure_and_holds_the_rest(emulated):
    emulated.fail("SaveKernel", "reject", times=1, message="Kernel slug is not valid")
    result = _remote_train("--accelerator", "none")
    job = jobs.load()
    name, (k1, k2) = job.name, job.kernels
    refusal = f"Kaggle refused the push of {k1.slug}: Kernel slug is not valid"
    assert result.exit_code == 1
    assert f"Error: {refusal}; held, not pushed: {k2.slug}" in result.output.splitlines()
    assert _error(result) == (
        f"Error: job {name} is not finished: {k1.ref} gave no runs ({refusal}); {k2.ref} held, "
        f"not pushed ({refusal}); to push it run `kit remote pull --push-held {name}`"
    )
    assert job.state == "running" and _states(job) == [("failed", None), ("held", None)]
    assert _pushes(emulated) == 1


def test_no_gpu_quota_left_refuses_before_any_push(emulated):
    emulated.gpu_hours_used = emulated.gpu_quota_hours
    result = _remote_train()
    assert result.exit_code == 1
    assert "GPU hours but 0.0 of this week's 30 are left" in result.output
    assert _pushes(emulated) == 0


def test_the_session_limit_queues_the_remaining_kernels(emulated):
    emulated.max_gpu_sessions = 1
    result = _remote_train()
    assert result.exit_code == 0, result.output
    assert "Maximum batch GPU session count of 1 reached" in result.output
    assert "it waits until one of the running sessions ends" in result.output
    assert len(runs.all_runs(model="scratch")) == 2


# ----------------------------------------------------------------------------- a cross-validated group


def test_a_group_job_and_its_group_are_recorded_before_the_first_push(fixture_data, monkeypatch):
    seen = []

    def push(folder):
        (path,) = jobs.jobs_dir().glob("*.json")
        seen.append((json.loads(path.read_text()), groups.all_groups()))
        raise KitError("stop here")

    monkeypatch.setattr(client, "username", lambda: "demo")
    monkeypatch.setattr(kaggle_kernels, "push_kernel", push)
    folds = remote_run.Folds(3, 2, fold_seed=7)
    with pytest.raises(KitError, match="stop here"):
        remote_run.train("scratch", [5], 2, "none", overrides=dict(TINY), folds=folds)
    record, (group,) = seen[0]
    assert record["group"] == group.name and (group.folds, group.repeats, group.fold_seed) == (3, 2, 7)
    assert [(k["members"], k["seeds"]) for k in record["kernels"]] == [
        ([0, 2, 4], [5, 7, 9]),
        ([1, 3, 5], [6, 8, 10]),
    ]
    assert [(m.fold, m.repeat, m.seed, m.run) for m in group.members] == [
        (k, r, 5 + r * 3 + k, None) for r in range(2) for k in range(3)
    ]
    assert group.data_checksum == install.local_identity()["data_checksum"] and group.config["seed"] == 5


def test_group_options_that_do_not_go_remote_are_refused_before_anything_is_made(fixture_data):
    assert _kit("remote", "train", "scratch", "--folds", "3", "--seeds", "1-3").output == (
        "Error: with --folds, --seeds is one seed S, the group's base seed (member m trains with seed "
        "S + m); got 3 seeds\n"
    )
    assert _kit("remote", "train", "scratch", "--repeats", "2").output == (
        "Error: --repeats, --fold-seed, --same-folds and --jobs go with --folds K (a cross-validated group)\n"
    )
    assert (
        "Error: No such option '--pseudo-labels'"
        in _kit("remote", "train", "scratch", "--folds", "3", "--pseudo-labels", "g").output
    )
    assert not jobs.jobs_dir().exists() and groups.all_groups() == []


def test_a_group_trained_on_kaggle_comes_home_as_a_local_group(emulated):
    """`--folds 3 --repeats 2` over 2 kernels: a download that gives up leaves the group partly
    filled (the other kernel's members installed), the pull completes it; each member is what a
    local group's would be, and `kit ensemble GROUP` judges it out of fold."""
    emulated.fail("/kernels-output/", "drop", times=3)  # every attempt of the first download
    shape = ["--folds", "3", "--repeats", "2", "--fold-seed", "7", "--seeds", "5", "--kernels", "2"]
    result = _kit("remote", "train", "scratch", *shape, *SCRATCH_TINY, "--accelerator", "none")
    assert result.exit_code == 1
    job = jobs.load()
    group = groups.load(job.group)
    (done,) = [k for k in job.kernels if k.state == "installed"]
    assert [m.run is not None for m in group.members] == [i in done.members for i in range(6)]
    assert len(group.runs()) == 3 and not group.complete
    pulled = _kit("remote", "pull", job.name)
    assert pulled.exit_code == 0, pulled.output
    assert (
        f"group {group.name} complete: judge it out of fold with `kit ensemble {group.name}`" in pulled.output
    )
    group, y = groups.load(group.name), data.load().y_train
    assert group.complete and [r.name for r in group.runs()] == [m.run for m in group.members]
    for i, (m, run) in enumerate(zip(group.members, group.runs())):
        assert (m.fold, m.repeat, m.seed) == (i % 3, i // 3, 5 + i)  # member i = repeat * K + fold
        assert [run.metrics[k] for k in ("group", "fold", "repeat", "seed")] == [
            group.name,
            m.fold,
            m.repeat,
            m.seed,
        ]
        split = groups.member_split(group, m, y)
        assert (run.metrics["split_hash"], run.metrics["n_val"]) == (split.hash, len(split.val_idx))
        assert json.loads(run.file(install.PROVENANCE).read_text())["job"] == job.name
    judged = _kit("ensemble", group.name)
    assert judged.exit_code == 0, judged.output
    made = runs.all_runs(model="ensemble")[-1]
    oof, test, names = ensemble.out_of_fold([group], y.astype(np.int64))
    assert made.metrics["members"] == names == [m.run for m in group.members]
    assert np.allclose(made.val_proba(), oof.proba, atol=1e-6) and np.allclose(
        made.test_proba(), test, atol=1e-6
    )
    assert made.metrics["val_accuracy"] == pytest.approx(metrics.accuracy(oof.proba, y))
    assert made.metrics["val_loss"] == pytest.approx(metrics.log_loss(oof.proba, y), rel=1e-6)
    assert made.metrics["rows_all_wrong"] == int(oof.all_wrong.sum())


def test_a_kernel_trains_its_members_at_once_with_jobs_and_writes_the_same_bytes(emulated):
    """`--jobs 2`: the kernel makes its members' folders, then trains them two at a time, each in
    its own process; `--jobs auto` (the default) decides in the kernel: one at a time on a CPU.
    The runs equal those of the one-at-a-time kernel, byte for byte."""
    shape = ["--folds", "3", "--fold-seed", "7", "--seeds", "5", "--kernels", "1", *SCRATCH_TINY]
    for extra in (["--jobs", "2"], ["--jobs", "1"], []):
        result = _kit("remote", "train", "scratch", *shape, *extra, "--accelerator", "none")
        assert result.exit_code == 0, result.output
    two, one, auto = [groups.load(j.group) for j in jobs.all_jobs()[-3:]]
    assert [j.member_jobs for j in jobs.all_jobs()[-3:]] == [2, 1, None]
    for a, b, c in zip(two.runs(), one.runs(), auto.runs()):
        for name in (runs.VAL_PROBA, runs.TEST_PROBA):
            assert a.file(name).read_bytes() == b.file(name).read_bytes() == c.file(name).read_bytes()


# ----------------------------------------------------------------------------- faults during a job


def _one_kernel(*extra):
    return _kit("remote", "train", "scratch", "--seeds", "1", "--kernels", "1", *SCRATCH_TINY, *extra)


def _error(result) -> str:
    """The command's last line: the one `Error: ...` a KitError prints."""
    return result.output.strip().splitlines()[-1]


def _states(job) -> list[tuple[str, int | None]]:
    return [(k.state, k.version) for k in job.kernels]


def _status_of(job, kernel) -> str:
    """`kit remote status JOB`'s line for `kernel`."""
    (line,) = [x for x in _kit("remote", "status", job.name).output.splitlines() if kernel.ref + " " in x]
    return line.strip()


@pytest.mark.parametrize("reached_kaggle", [False, True], ids=["never-sent", "sent-answer-lost"])
def test_a_push_interrupted_by_ctrl_c_is_resolved_by_the_next_pull(emulated, monkeypatch, reached_kaggle):
    """Ctrl-C between recording 'pushing' and recording the push's answer: the pull asks
    Kaggle whether the version exists, follows it if so and pushes the kernel if not."""
    real_push = kaggle_kernels.push_kernel

    def push_then_ctrl_c(folder):
        if reached_kaggle:
            real_push(folder)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(kaggle_kernels, "push_kernel", push_then_ctrl_c)
        result = _remote_train("--accelerator", "none")
    job = jobs.load()
    name, k1 = job.name, job.kernels[0]
    assert result.exit_code == 1
    assert _error(result) == (
        f"Error: interrupted; the pushed kernels keep running on Kaggle. Reattach with: kit remote pull {name}"
    )
    assert job.state == "running" and _states(job) == [("pushing", None), ("pending", None)]
    assert _status_of(job, k1) == (
        f"{k1.ref} - seeds 1: pushing; `kit remote pull {name}` checks whether Kaggle has it and "
        f"pushes it if not"
    )
    pulled = _kit("remote", "pull", name)
    assert pulled.exit_code == 0, pulled.output
    said = (
        f"{k1.slug}: its interrupted push reached Kaggle as version 1; following it"
        if reached_kaggle
        else f"{k1.slug}: its interrupted push never reached Kaggle; pushing it now"
    )
    assert said in pulled.output.splitlines()
    assert _pushes(emulated) == 2  # one per kernel: the one Kaggle had was not pushed again
    job = jobs.load()
    assert job.state == "complete" and _states(job) == [("installed", 1), ("installed", 1)]
    assert len(runs.all_runs(model="scratch")) == 2
    assert _status_of(job, k1).startswith(f"{k1.ref} v1 seeds 1: installed  runs: scratch-")


def test_a_download_that_gives_up_is_not_a_failure_and_the_next_pull_fetches_it(emulated):
    emulated.fail("/kernels-output/", "drop", times=3)  # every attempt (KIT_RETRY_ATTEMPTS=3)
    result = _one_kernel("--accelerator", "none")
    job = jobs.load()
    name, k1 = job.name, job.kernels[0]
    assert result.exit_code == 1
    gave_up = (  # the client's own words for the dropped connection stand between the brackets
        f"its output could not be downloaded: gave up after 3 attempts: network error while downloading "
        f"the output of kernel {k1.ref}/1 \\(ChunkedEncodingError: .+\\)"
    )
    assert re.fullmatch(
        f"Error: job {name} is not finished: {k1.ref} finished, but {gave_up}; its runs stay on "
        f"Kaggle: `kit remote pull {name}` downloads them",
        _error(result),
    )
    assert job.state == "running" and _states(job) == [("downloading", 1)]  # not failed
    assert re.fullmatch(
        f"{k1.ref} v1 seeds 1: downloading  \\({gave_up}\\); `kit remote pull {name}` downloads it",
        _status_of(job, k1),
    )
    pulled = _kit("remote", "pull", name)
    assert pulled.exit_code == 0, pulled.output
    job = jobs.load()
    assert job.state == "complete" and _states(job) == [("installed", 1)]
    assert len(runs.all_runs(model="scratch")) == 1 and _pushes(emulated) == 1


def test_a_quota_refusal_holds_the_kernels_until_the_user_asks(emulated, monkeypatch):
    """The GPU quota runs out after the first push: the second kernel is held; a plain pull
    pushes nothing and says how to push it; `--push-held` does."""
    real_push = kaggle_kernels.push_kernel

    def push_then_quota_gone(folder):
        pushed = real_push(folder)
        emulated.fail("SaveKernel", "quota")  # the next push is refused for the quota
        return pushed

    with monkeypatch.context() as m:
        m.setattr(kaggle_kernels, "push_kernel", push_then_quota_gone)
        result = _remote_train()  # the GPU accelerator
    job = jobs.load()
    name, k2 = job.name, job.kernels[1]
    refusal = (
        f"Kaggle refused the push of {k2.slug}: Accelerator Quota Exceeded: You've exceeded the "
        f"number of hours allowed to use GPU (30 hours a week). You will not be able to commit unless "
        f"you turn off GPU."
    )
    said = (
        f"Error: job {name} is not finished: {k2.ref} held, not pushed ({refusal}); "
        f"to push it run `kit remote pull --push-held {name}`"
    )
    assert result.exit_code == 1 and _error(result) == said
    assert f"Error: {refusal[:-1]}; held, not pushed: {k2.slug}" in result.output.splitlines()
    assert job.state == "running" and _states(job) == [("installed", 1), ("held", None)]
    assert _status_of(job, k2) == (
        f"{k2.ref} - seeds 2: held  ({refusal}); `kit remote pull --push-held {name}` pushes it"
    )
    pulled = _kit("remote", "pull", name)
    assert pulled.exit_code == 1 and _error(pulled) == said
    assert _pushes(emulated) == 2  # the refused one; nothing pushed by the pull
    assert jobs.load().state == "running" and _states(jobs.load()) == [
        ("installed", 1),
        ("held", None),
    ]
    pushed = _kit("remote", "pull", "--push-held", name)
    assert pushed.exit_code == 0, pushed.output
    job = jobs.load()
    assert job.state == "complete" and _states(job) == [("installed", 1), ("installed", 1)]
    assert _pushes(emulated) == 3 and len(runs.all_runs(model="scratch")) == 2


def _gives_up(emulated, rpc: str):
    """A one-kernel CPU job whose `rpc` fails every attempt of its first call: the result, the
    job record, its name and its kernel."""
    emulated.fail(rpc, "500", times=3)
    result = _one_kernel("--accelerator", "none")
    job = jobs.load()
    assert result.exit_code == 1
    return result, job, job.name, job.kernels[0]


def test_status_calls_that_give_up_name_the_pull_that_goes_on(emulated):
    result, job, name, k1 = _gives_up(emulated, "GetKernelSessionStatus")  # every attempt of the first poll
    assert _error(result) == (
        f"Error: gave up after 3 attempts: HTTP 500 from Kaggle while reading the status of kernel "
        f"{k1.ref}/1 (Internal server error). Check your connection (or https://www.kaggle.com "
        f"status) and run `kit remote pull {name}` to go on (the pushed kernels keep running on Kaggle)."
    )
    assert job.state == "running" and _states(job) == [("queued", 1)]
    assert _status_of(job, k1) == f"{k1.ref} v1 seeds 1: queued"
    pulled = _kit("remote", "pull", name)
    assert pulled.exit_code == 0, pulled.output
    assert jobs.load().state == "complete" and _pushes(emulated) == 1


def test_a_push_that_gives_up_is_pushed_by_the_next_pull(emulated):
    result, job, name, k1 = _gives_up(emulated, "SaveKernel")  # Kaggle never made the version
    assert _error(result) == (
        f"Error: gave up after 3 attempts: HTTP 500 from Kaggle while pushing kernel {k1.slug} "
        f"(Internal server error). Check your connection (or https://www.kaggle.com status) and run "
        f"`kit remote pull {name}` to go on (the pushed kernels keep running on Kaggle)."
    )
    assert job.state == "running" and _states(job) == [("pushing", None)]
    pulled = _kit("remote", "pull", name)
    assert pulled.exit_code == 0, pulled.output
    assert f"{k1.slug}: its interrupted push never reached Kaggle; pushing it now" in pulled.output
    job = jobs.load()
    assert job.state == "complete" and _states(job) == [("installed", 1)] and _pushes(emulated) == 4


def test_pulling_a_failed_job_fails(emulated):
    emulated.fail("SaveKernel", "script_error", times=1, message="CUDA error: out of memory")
    result = _one_kernel("--accelerator", "none")
    assert result.exit_code == 1
    job = jobs.load()
    name, k1 = job.name, job.kernels[0]
    said = (
        f"Error: job {name} failed: 1 of 1 kernel(s) gave no runs: {k1.ref}: Process exited with "
        f"code 1; log ends: CUDA error: out of memory"
    )
    assert _error(result) == said
    pulled = _kit("remote", "pull", name)
    assert pulled.exit_code == 1 and _error(pulled) == said  # not "nothing left to do", exit 0
    job = jobs.load()
    assert job.state == "failed" and _states(job) == [("failed", 1)]
    assert _status_of(job, k1) == (
        f"{k1.ref} v1 seeds 1: failed  (Process exited with code 1; log ends: CUDA error: out of memory)"
    )


# Sizes only: the epochs, the training rows and the network's width (float16 convolutions on a
# CPU are slow: at the best preset's width one epoch of 256 images takes about 90 s here)
CNN_SMALL = ["--epochs", "1", "--max-train", "256", "--width", "8", "--growth", "1"]


@pytest.mark.slow  # TensorFlow in the kernel: the CNN's remote recipe really trains
def test_the_cnn_remote_recipe_trains_end_to_end(emulated):
    """`kit remote train cnn` as a user runs it (the GPU accelerator, preset best, float32).
    Only sizes are cut (CNN_SMALL; none touches the precision policy or the augmentation), so
    the kernel runs the code paths a real job runs. --mixed-precision reaches the kernel as any
    option does (test_remote_recipe_is_the_gpu_budget_in_float32_and_every_option_wins) and
    trains on TensorFlow in tests/test_cnn.py."""
    mixed = False
    result = _kit("remote", "train", "cnn", "--seeds", "1", "--kernels", "1", *CNN_SMALL)
    assert result.exit_code == 0, result.output
    job = jobs.load()
    assert (job.accelerator, job.config["preset"], job.config["mixed_precision"]) == (
        remote_run.GPU,
        "best",
        mixed,
    )
    assert job.state == "complete" and job.kernels[0].state == "installed"
    (run,) = runs.all_runs(model="cnn")
    assert run.metrics["seed"] == 1 and run.config["mixed_precision"] is mixed
