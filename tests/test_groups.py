"""Cross-validated groups (kit.groups, kit.training.train_group, kit.ensemble's out-of-fold
yardstick), on the fixture competition with tiny scratch networks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.model_selection import RepeatedStratifiedKFold

from kit import config, data, ensemble, groups, ledger, models, pseudo, runs, training
from kit.cli import cli
from kit.errors import KitError

TINY = dict(epochs=1, hidden=(16,))
K, R, FOLD_SEED = 3, 2, 7


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cfg(seed: int = 3):
    return models.get("scratch").make_config("default", seed=seed, **TINY)


@pytest.fixture
def labels(fixture_data) -> np.ndarray:
    return data.load().y_train.astype(np.int64)


@pytest.fixture
def group(fixture_data) -> groups.Group:
    return training.train_group("scratch", _cfg(), K, R, FOLD_SEED, progress=False)


def test_folds_partition_the_rows_stratified_and_repeats_draw_anew(labels):
    a = groups.assignment(labels, K, R, FOLD_SEED)
    assert a.shape == (R, len(labels)) and set(np.unique(a)) == set(range(K))
    for r in range(R):
        counts = np.array([np.bincount(labels[a[r] == k], minlength=10) for k in range(K)])  # (K, 10)
        assert (counts.max(axis=0) - counts.min(axis=0)).max() <= 1  # every class split evenly
        assert counts.sum() == len(labels)  # each row in exactly one fold
    assert (a[0] != a[1]).any()
    same = groups.assignment(labels, K, R, FOLD_SEED, same_folds=True)
    assert (same[0] == same[1]).all() and (same[0] == a[0]).all()
    assert (groups.assignment(labels, K, R, FOLD_SEED) == a).all()  # from the seed alone


def test_a_group_trains_every_member_on_the_rows_outside_its_fold(group, labels):
    assert group.complete and len(group.members) == K * R
    assert [m.seed for m in group.members] == [3 + i for i in range(K * R)]
    covered = np.zeros(len(labels), np.int64)
    for m, run in zip(group.members, group.runs()):
        cfg, met = run.config, run.metrics
        assert (cfg["group"], cfg["fold"], cfg["repeat"], cfg["seed"]) == (
            group.name,
            m.fold,
            m.repeat,
            m.seed,
        )
        assert met["n_train"] + met["n_val"] == len(labels)
        covered[groups.member_split(group, m, labels).val_idx] += 1
    assert (covered == R).all()  # every labelled row out of fold for exactly R members


def _direct_oof(group: groups.Group, y: np.ndarray):
    """The out-of-fold average computed from the members' files and scikit-learn's folds."""
    cv = list(RepeatedStratifiedKFold(n_splits=K, n_repeats=R, random_state=FOLD_SEED).split(y, y))
    total, count, wrong = np.zeros((len(y), 10)), np.zeros(len(y)), np.zeros(len(y))
    for run in group.runs():
        rows = cv[run.config["repeat"] * K + run.config["fold"]][1]
        p = np.load(run.file(runs.VAL_PROBA)).astype(np.float64)
        total[rows] += p
        count[rows] += 1
        wrong[rows] += p.argmax(1) != y[rows]
    return total / count[:, None], (wrong == count).sum(), (wrong > 0).sum()


def test_the_out_of_fold_figures_are_a_direct_computation_from_the_members_files(group, labels):
    run = ensemble.build_groups([group.name], echo=lambda s: None)
    proba, all_wrong, any_wrong = _direct_oof(group, labels)
    m = run.metrics
    assert np.allclose(run.val_proba(), proba, atol=1e-6)
    assert m["val_accuracy"] == pytest.approx(np.mean(proba.argmax(1) == labels))
    assert m["val_loss"] == pytest.approx(-np.mean(np.log(proba[np.arange(len(labels)), labels])), rel=1e-5)
    assert (m["rows_all_wrong"], m["rows_any_wrong"]) == (all_wrong, any_wrong)
    assert m["shared_error_share"] == pytest.approx(all_wrong / any_wrong)
    tests = np.mean([r.test_proba().astype(np.float64) for r in group.runs()], axis=0)
    assert np.allclose(run.test_proba(), tests, atol=1e-6)
    assert m["members_per_row"] == [R, R] and m["n_val"] == len(labels)


def test_an_interrupted_group_resumes_its_unfinished_members_to_the_same_result(fixture_data, monkeypatch):
    whole = training.train_group("scratch", _cfg(), K, R, FOLD_SEED, progress=False)
    real, calls = training.train, []

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KitError("interrupted")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", dies_on_the_third)
    with pytest.raises(KitError, match="interrupted"):
        training.train_group("scratch", _cfg(), K, R, FOLD_SEED, progress=False)
    monkeypatch.setattr(training, "train", real)
    half = groups.all_groups()[-1]
    first_two = [r.name for r in half.runs()]
    assert len(first_two) == 2 and not half.complete
    result = CliRunner().invoke(cli, ["train", "scratch", "--resume", half.name, "--quiet"])
    assert result.exit_code == 0, result.output
    resumed = groups.load(half.name)
    assert resumed.complete and [r.name for r in resumed.runs()][:2] == first_two
    assert [_sha(r.file(runs.VAL_PROBA)) for r in resumed.runs()] == [
        _sha(r.file(runs.VAL_PROBA)) for r in whole.runs()
    ]
    again = CliRunner().invoke(cli, ["train", "scratch", "--resume", half.name])
    assert again.output == f"Error: group {half.name} already finished; there is nothing to resume\n"


def test_kit_runs_lists_members_with_their_fold_and_the_group(group):
    out = CliRunner().invoke(cli, ["runs"]).output.splitlines()
    first = group.runs()[0]
    assert out[0] == f"{first.name:45s} {first.metrics['val_accuracy']:.4f}  fold 1 of {group.name}"
    assert out[-1] == f"group {group.name}: {K} folds x {R} repeats, finished"


def test_kit_ensemble_takes_the_latest_group_and_predict_writes_its_submission(group):
    result = CliRunner().invoke(cli, ["ensemble"])
    assert result.exit_code == 0, result.output
    assert f"out of fold over {config.competition().n_train} rows ({R} members per row)" in result.output
    made = runs.all_runs(model="ensemble")[-1]
    assert made.config["groups"] == [group.name]
    result = CliRunner().invoke(cli, ["predict", group.name])
    assert result.exit_code == 0, result.output
    assert f"run {made.name}: out-of-fold accuracy" in result.output  # the group's ensemble, reused
    csv = result.output.strip().splitlines()[-1]
    labels = np.loadtxt(csv, delimiter=",", skiprows=1, dtype=int)[:, 1]
    assert (labels == made.test_proba().argmax(1)).all()
    result = CliRunner().invoke(cli, ["report", group.name])  # charts on every labelled row
    index = Path(result.output.strip().splitlines()[-1])
    assert (index.parent / f"{made.name}-confusion.png").exists() and "skipped" not in index.read_text()


def test_a_group_and_fixed_split_runs_are_never_mixed(group):
    fixed = training.train("scratch", _cfg(), progress=False)
    result = CliRunner().invoke(cli, ["ensemble", group.name, fixed.name])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {group.name} is a cross-validated group (judged out of fold) and {fixed.name} is not: "
        f"ensemble groups alone (`kit ensemble {group.name}`) or fixed-split runs alone\n"
    )
    member = group.runs()[0].name
    result = CliRunner().invoke(cli, ["ensemble", member, fixed.name])
    assert result.output.count("\n") == 1 and result.output.startswith(
        f"Error: {member} is a member of the cross-validated group {group.name}"
    )
    # with no run named, the latest fixed-split runs are taken: the group's members are not
    assert ensemble.default_members() == [fixed]


def test_group_options_are_checked_before_anything_is_trained(fixture_data):
    runner = CliRunner()
    assert runner.invoke(cli, ["train", "scratch", "--repeats", "2"]).output == (
        "Error: --repeats, --fold-seed, --same-folds and --jobs go with --folds K (a cross-validated group)\n"
    )
    out = runner.invoke(cli, ["train", "scratch", "--folds", "1"]).output
    assert "Invalid value for '--folds'" in out
    out = runner.invoke(cli, ["train", "scratch", "--folds", "3", "--jobs", "0"]).output
    assert out.endswith("Error: Invalid value for '--jobs': '0' is neither a count of 1 or more nor auto\n")
    with pytest.raises(KitError, match="more than the rarest class has rows"):
        groups.assignment(np.array([0, 0, 1, 1, 1]), 3, 1, 0)
    assert not (config.runs_dir() / groups.GROUPS).exists()


def test_members_trained_in_parallel_processes_write_what_one_process_writes(fixture_data):
    one = training.train_group("scratch", _cfg(), K, 1, FOLD_SEED, progress=False)
    two = training.train_group("scratch", _cfg(), K, 1, FOLD_SEED, progress=False, jobs=2)
    assert two.complete and [m.run for m in two.members] != [m.run for m in one.members]
    for a, b in zip(one.runs(), two.runs()):
        assert _sha(a.file(runs.VAL_PROBA)) == _sha(b.file(runs.VAL_PROBA))
        assert _sha(a.file(runs.TEST_PROBA)) == _sha(b.file(runs.TEST_PROBA))


def test_pseudo_labels_come_from_the_teacher_member_that_never_saw_the_fold(fixture_data, labels):
    sure = dict(epochs=15, hidden=(64,))
    cfg = models.get("scratch").make_config("default", seed=1, **sure)
    teacher = training.train_group("scratch", cfg, K, 1, FOLD_SEED, progress=False)
    pl = pseudo.PseudoLabels(teacher.name, 0.6)
    student = training.train_group("scratch", cfg, K, 1, FOLD_SEED, progress=False, pseudo=pl)
    for t, s in zip(teacher.runs(), student.runs()):
        taken = int((t.test_proba().max(axis=1) >= 0.6).sum())
        assert 0 < taken < len(t.test_proba())
        assert s.metrics["n_pseudo"] == taken
        assert s.metrics["n_train"] == t.metrics["n_train"] + taken
        assert s.config["pseudo_labels"] == teacher.name
    fixed = training.train("scratch", cfg, progress=False)
    for teach, kwargs, says in (
        (fixed.name, dict(folds=K), "is a single run, which saw them"),
        (teacher.name, dict(folds=K + 1), "has other folds"),
        (teacher.name, {}, "is a group: its pseudo-labels are for a group with the same folds"),
    ):
        with pytest.raises(KitError, match=says):
            p = pseudo.PseudoLabels(teach, 0.6)
            if kwargs:
                training.train_group("scratch", cfg, kwargs["folds"], 1, FOLD_SEED, progress=False, pseudo=p)
            else:
                training.train("scratch", cfg, progress=False, pseudo=p)


def test_a_group_whose_members_are_on_kaggle_says_to_pull_it(fixture_data):
    cfg = _cfg()
    g = groups.create("scratch", dataclasses.asdict(cfg), K, 1, FOLD_SEED, False, data.load().checksum)
    pull = "`kit remote pull` (its other members are trained on Kaggle)"
    result = CliRunner().invoke(cli, ["ensemble", g.name])
    assert (
        result.output == f"Error: group {g.name} is not finished: 0 of {K} members; finish it with {pull}\n"
    )
    result = CliRunner().invoke(cli, ["train", "scratch", "--resume", g.name])
    assert result.output == f"Error: group {g.name} is trained on Kaggle: finish it with {pull}\n"


def test_kit_submit_takes_a_group_and_uploads_its_ensembles_csv(group, kaggle_emulator):
    result = CliRunner().invoke(cli, ["submit", group.name])
    assert result.exit_code == 0, result.output
    made = runs.all_runs(model="ensemble")[-1]
    assert made.config["groups"] == [group.name]
    (rec,) = ledger.records()
    assert rec["status"] == "complete" and json.loads(rec["runs"])[0] == made.name


def test_jobs_auto_is_one_on_a_cpu_and_several_members_a_card_on_a_gpu(monkeypatch):
    """--jobs auto (kit.training.auto_jobs): what it decides from the GPUs and cores it finds."""
    cnn, scratch = models.get("cnn"), models.get("scratch")

    def machine(gpus: list[str], cores: int) -> None:
        monkeypatch.setattr(training.backends, "nvidia_gpus", lambda: gpus)
        monkeypatch.setattr(training.config, "cpu_cores", lambda: cores)

    machine([], 16)
    assert training.auto_jobs(cnn, 15) == 1  # a CPU: one process already uses every core
    machine(["NVIDIA H200"], 16)
    assert [training.auto_jobs(cnn, n) for n in (1, 3, 15)] == [1, 3, training.GPU_JOBS_PER_CARD]
    assert training.auto_jobs(scratch, 15) == 1  # NumPy never uses the card
    machine(["Tesla T4", "Tesla T4"], 4)
    assert training.auto_jobs(cnn, 5) == 2  # Kaggle's T4 pair: two cores a member
    machine(["Tesla T4"], 1)
    assert training.auto_jobs(cnn, 5) == 1


def test_on_several_gpus_each_member_process_sees_one_in_turn(fixture_data, monkeypatch):
    group = groups.create("scratch", dataclasses.asdict(_cfg()), 4, 1, FOLD_SEED, False, "x")
    folders = [config.runs_dir() / f"m{i}" for i in range(4)]
    seen = []

    def fake_run(argv, env, **kwargs):
        seen.append((argv[-2], env.get("CUDA_VISIBLE_DEVICES")))
        # the processes share a card: neither JAX nor TensorFlow takes all its memory at start
        assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == os.environ.get(
            "XLA_PYTHON_CLIENT_PREALLOCATE", "false"
        )
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(training.subprocess, "run", fake_run)
    monkeypatch.setattr(training.backends, "nvidia_gpus", lambda: ["Tesla T4", "Tesla T4"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    training._train_in_processes(models.get("scratch"), group, group.members, folders, 2)
    assert sorted(seen) == [(str(f), str(i % 2)) for i, f in enumerate(folders)]
    seen.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # the user's choices are kept
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    training._train_in_processes(models.get("scratch"), group, group.members, folders, 2)
    assert {gpu for _, gpu in seen} == {"3"}
