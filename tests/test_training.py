"""The one training lifecycle (kit.training) and the model registry (kit.models): one writer per
run folder, one metrics schema for every model, and a model added with one module and one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from fixtures_data import fixture_data_at
from kit import hparams, metrics, models, runs, training
from kit.cli import cli
from kit.errors import KitError
from kit.models.scratch import net

# Keras 3.15 itself calls np.array() on its TF variables inside fit(); not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TINY_SCRATCH = dict(hidden=(16,), epochs=2, batch_size=128, threads=1)


def scratch_cfg(**kw):
    return models.get("scratch").make_config("default", **{**TINY_SCRATCH, **kw})


def interrupted_scratch_run(monkeypatch) -> runs.Run:
    """An unfinished scratch run with the checkpoint of its first epoch (Ctrl-C in epoch 2)."""
    real, calls = net.evaluate, []

    def interrupt(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(net, "evaluate", interrupt)
    with pytest.raises(KitError, match="interrupted during epoch 2"):
        training.train("scratch", scratch_cfg(), progress=False)
    monkeypatch.setattr(net, "evaluate", real)
    (run,) = runs.all_runs(model="scratch", finished=False)
    return run


# ----------------------------------------------------------------------------- one writer

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from kit import io
    with io.exclusive(Path(sys.argv[1]), wait=False):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_writer_is_refused_naming_the_process(fixture_data, monkeypatch):
    run = interrupted_scratch_run(monkeypatch)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run.file(training.LOCK))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "held\n"
        result = CliRunner().invoke(cli, ["train", "scratch", "--resume", str(run.path), "--quiet"])
        assert result.exit_code == 1
        # the holder recorded its pid and command line (`python -c ... LOCK` has argv ['-c', LOCK])
        assert result.output == (
            f"Error: {run.path} is being trained by process {holder.pid} "
            f"(-c {run.file(training.LOCK)}); wait for it to finish (or stop it), "
            f"then resume it\n"
        )
        assert not run.finished
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed, as a crash would): its lock file stays, and blocks nothing
    assert run.file(training.LOCK).exists()
    resumed = training.train("scratch", resume=run.path, progress=False)
    assert resumed.finished and resumed.metrics["epochs_run"] == 2
    assert not run.file(training.LOCK).exists()


def test_a_run_finished_just_before_we_took_its_lock_is_not_trained_again(fixture_data, monkeypatch):
    from contextlib import contextmanager

    run = interrupted_scratch_run(monkeypatch)
    real = training.one_writer

    @contextmanager
    def other_process_finishes_first(r):
        r.finish({"val_accuracy": 0.5})  # the previous holder's last act
        with real(r):
            yield

    monkeypatch.setattr(training, "one_writer", other_process_finishes_first)
    with pytest.raises(KitError, match="already finished; there is nothing to resume"):
        training.train("scratch", resume=run.path, progress=False)
    assert run.metrics["val_accuracy"] == 0.5 and len(run.history()) == 1


# ----------------------------------------------------------------------------- one schema

COMMON = {
    "model",
    "seed",
    "preset",
    "val_accuracy",
    "val_loss",
    "train_time_s",
    "wall_time_s",
    "inference_s",
    "time_to_99_4_s",
    "data_checksum",
    "split_hash",
    "n_train",
    "n_val",
    "n_test",
    "epochs_run",
    "best_epoch",
    "kept_epoch",
    "finished_utc",
}


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, installed_fixture_dir, kit_session_cache) -> dict:
    """One tiny finished run of each model (2 epochs), trained once for the tests that read
    them, in folders of their own."""
    cnn_cfg = models.get("cnn").make_config("default", width=4, epochs=2, max_train=128, patience=0)
    with fixture_data_at(tmp_path_factory.mktemp("finished-runs"), installed_fixture_dir, kit_session_cache):
        yield {
            name: training.train(name, cfg, progress=False)
            for name, cfg in (("scratch", scratch_cfg()), ("cnn", cnn_cfg))
        }


def test_every_model_writes_the_same_metrics_with_the_same_meaning(finished_runs, fixture_data):
    for run in finished_runs.values():
        m, h = run.metrics, run.history()
        assert COMMON <= set(m), COMMON - set(m)
        # train_time_s is the epochs' own seconds; wall_time_s the whole command, so larger
        assert m["train_time_s"] == pytest.approx(h["seconds"].sum(), abs=1e-2)
        assert 0 < m["train_time_s"] < m["wall_time_s"]
        assert m["epochs_run"] == len(h) == 2 and 1 <= m["kept_epoch"] <= 2
        y = _val_labels()
        assert m["val_accuracy"] == pytest.approx(np.mean(run.val_proba().argmax(1) == y))


def test_every_model_loads_its_saved_run_and_predicts_what_the_run_recorded(finished_runs, fixture_data):
    from kit import data

    ds, _ = data.load_split()
    for name, run in finished_runs.items():
        model = models.get(name)
        trained = model.module.load(run, model.run_config(run.config))
        np.testing.assert_allclose(model.module.predict(trained, ds.X_test), run.test_proba(), atol=1e-6)


def _val_labels():
    from kit import data

    ds, sp = data.load_split()
    return ds.y_train[sp.val_idx]


def test_seconds_to_counts_the_epochs_until_the_target():
    history = [
        dict(seconds=2.0, val_accuracy=0.9),
        dict(seconds=3.0, val_accuracy=0.995),
        dict(seconds=4.0, val_accuracy=0.999),
    ]
    assert metrics.seconds_to(history, 0.994) == 5.0
    assert metrics.seconds_to(history, 0.9999) is None


# ----------------------------------------------------------------------------- a third model


@dataclass
class PriorConfig(hparams.ModelConfig):
    smoothing: float = hparams.param(1.0, "add-k smoothing of the class counts", gt=0)


def _prior_module() -> types.ModuleType:
    """A whole model in a few lines: it predicts the training set's class frequencies."""
    mod = types.ModuleType("prior")

    @dataclass
    class Trained:
        p: np.ndarray
        history: list
        best_epoch: int = 1
        kept_epoch: int = 1
        n_train: int = 0
        extra: dict = None

    def fit(cfg, run, data, progress):
        counts = np.bincount(data.y_train, minlength=10) + cfg.smoothing
        row = dict(epoch=1, loss=0.0, accuracy=0.0, val_loss=0.0, val_accuracy=0.0, lr=0.0, seconds=0.01)
        return Trained(counts / counts.sum(), [row], n_train=len(data.y_train), extra={})

    def save(trained, run):
        np.save(run.file("prior.npy"), trained.p)

    mod.__dict__.update(
        Config=PriorConfig,
        PRESETS={"reference": {}, "default": {}, "best": {}},
        RESUME_FILES=(),
        resolved=lambda cfg: cfg,
        check_resumable=lambda run: None,
        fit=fit,
        save=save,
        load=lambda run, cfg: Trained(np.load(run.file("prior.npy")), []),
        predict=lambda trained, X: np.tile(trained.p.astype(np.float32), (len(X), 1)),
    )
    return mod


def test_a_model_added_to_the_registry_trains_through_the_same_lifecycle(fixture_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "tests_prior_model", _prior_module())
    monkeypatch.setitem(
        models.MODELS, "prior", models.Model("prior", "class frequencies", "tests_prior_model")
    )
    cfg = models.get("prior").make_config("default", seed=3)
    run = training.train("prior", cfg, progress=False)
    assert run.name.startswith("prior-") and run.name.endswith("-s3") and run.finished
    assert COMMON <= set(run.metrics)
    assert run.config["smoothing"] == 1.0 and run.config["model"] == "prior"
    assert models.names()[-1] == "prior"
    with pytest.raises(KitError, match=r"^--smoothing must be > 0 \(got 0\.0\)$"):
        models.get("prior").make_config("default", smoothing=0.0)


def test_unknown_model_is_one_clear_error():
    with pytest.raises(KitError, match=r"^unknown model 'resnet'; choose one of: scratch, cnn$"):
        models.get("resnet")


def test_the_cli_has_a_train_command_per_registered_model():
    assert sorted(cli.commands["train"].commands) == sorted(models.names())


# ----------------------------------------------------------------------------- TensorFlow is quiet


@pytest.mark.slow
def test_kit_train_cnn_prints_no_tensorflow_start_up_lines(fixture_data):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": ""}
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kit.cli",
            "train",
            "cnn",
            "--width",
            "4",
            "--epochs",
            "1",
            "--max-train",
            "128",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for marker in ("I0000", "W0000", "E0000", "absl::InitializeLog"):
        assert marker not in out, out
    assert proc.stdout.startswith("val accuracy ") and proc.stderr == ""


# ----------------------------------------------------------------------------- progress


def test_without_a_terminal_progress_is_one_line_per_epoch_from_the_history(fixture_data):
    result = CliRunner().invoke(
        cli, ["train", "scratch", "--hidden", "16", "--epochs", "2", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    run = runs.latest("scratch")
    lines = result.output.splitlines()
    for row, line in zip(run.history().to_dict("records"), lines):
        assert line == (
            f"scratch default epoch {row['epoch']}/2  loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}  lr {row['lr']:.2e}  "
            f"{row['seconds']:.1f}s"
        )
    assert lines[2].startswith("val accuracy ") and lines[3] == f"run folder: {run.path}"


def test_quiet_progress_prints_nothing(capsys):
    p = training.Progress("x", "quiet")
    p.start(3)
    p.step(0.5)
    p.epoch(dict(epoch=1, loss=1.0, accuracy=0.5, val_loss=1.0, val_accuracy=0.5, lr=1e-3, seconds=1.0))
    p.close()
    assert capsys.readouterr() == ("", "")
