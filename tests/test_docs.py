"""The docs stay true to the code: every command and target documented, links alive, the
benchmarks page rendered from its result files, the study scripts runnable."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SCRIPTS = ROOT / "scripts"
EXPERIMENTS = sorted(p for p in (SCRIPTS / "experiments").glob("*.py") if not p.name.startswith("_"))
README_MAX_LINES = 200
# words that date a claim to a sitting or a machine nobody can find again
UNTRACEABLE = re.compile(r"this session|last session|previous session|a `?/tmp`? script", re.IGNORECASE)


def _import_script(name: str):
    sys.path[:0] = [str(SCRIPTS), str(SCRIPTS / "experiments")]
    try:
        return importlib.import_module(name)
    finally:
        del sys.path[:2]


def _commands(group: click.Group, prefix: str = "kit") -> list[str]:
    """Every command line of the CLI, subcommands of groups included ("kit train cnn")."""
    out = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix} {name}")
        else:
            out.append(f"{prefix} {name}")
    return out


def _make_targets() -> list[str]:
    """The Makefile's documented targets (`target: ... ## help`), as `make help` lists them."""
    text = (ROOT / "Makefile").read_text()
    return re.findall(r"^([a-zA-Z_-]+):[^\n]*?## ", text, flags=re.MULTILINE)


# ----------------------------------------------------------------------------- README


def test_every_kit_command_is_in_the_readme():
    from kit.cli import cli

    commands = _commands(cli)
    assert "kit train scratch" in commands and "kit train cnn" in commands  # the walk reaches groups
    readme = README.read_text()
    missing = [c for c in commands if not re.search(rf"`{re.escape(c)}(?=[ `\]])", readme)]
    assert not missing, f"README.md does not document: {', '.join(missing)}"


def test_every_make_target_is_in_the_readme():
    targets = _make_targets()
    assert {"help", "test", "test-fast", "lint", "format", "bench"} <= set(targets)
    readme = README.read_text()
    missing = [t for t in targets if not re.search(rf"`make {re.escape(t)}(?=[ `])", readme)]
    assert not missing, f"README.md does not document: {', '.join('make ' + t for t in missing)}"


def test_every_make_target_has_help_text():
    text = (ROOT / "Makefile").read_text()
    rules = re.findall(r"^([a-zA-Z_-]+):(?!=)", text, flags=re.MULTILINE)
    undocumented = sorted(set(rules) - set(_make_targets()))
    assert not undocumented, f"Makefile targets without a `## help` text: {undocumented}"


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; reference detail belongs in docs/"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_links_resolve_and_claims_are_traceable(page: Path):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    found = UNTRACEABLE.findall(text)
    assert not found, f"{page.name} dates claims to a sitting or a lost script: {found}"


# ----------------------------------------------------------------------------- benchmarks


def _record(
    section: str,
    results: dict,
    utc: str,
    commit: str = "0123456789abcdef",
    dirty: bool = False,
    cpu: str = "Test CPU",
    cores: int = 4,
) -> dict:
    return {
        "schema": 1,
        "section": section,
        "utc": utc,
        "command": f"python scripts/bench.py {section}",
        "settings": {},
        "machine": {
            "cpu": cpu,
            "cores": cores,
            "usable_cores": cores,
            "simd": ["avx2"],
            "memory_gib": 16.0,
            "os": "Linux",
            "load_average_start": 0.5,
            "load_average_end": 1.0,
        },
        "versions": {"python": "3.11.7", "numpy": "2.0.0", "tensorflow": "2.20.0", "keras": "3.10.0"},
        "commit": commit,
        "dirty": dirty,
        "results": results,
    }


def _write(folder: Path, rec: dict) -> None:
    stamp = datetime.fromisoformat(rec["utc"]).strftime("%Y%m%d-%H%M%S")
    (folder / f"{rec['section']}-{stamp}.json").write_text(json.dumps(rec))


def test_bench_report_renders_one_row_per_load_result_newest_first(tmp_path):
    report = _import_script("bench_report")
    _write(
        tmp_path,
        _record(
            "load",
            {
                "install_s": 4.46,
                "noop_s": 0.22,
                "parse_s": 2.53,
                "cache_hit_s": 0.01,
                "is_installed_deep_s": 0.11,
            },
            "2026-11-25T10:00:00+00:00",
        ),
    )
    _write(
        tmp_path,
        _record(
            "load",
            {
                "install_s": 3.37,
                "noop_s": 0.168,
                "parse_s": 2.0,
                "cache_hit_s": 0.0091,
                "is_installed_deep_s": 0.083,
            },
            "2026-12-01T11:20:16+00:00",
            commit="fedcba9876543210",
            dirty=True,
            cpu="AMD EPYC",
            cores=2,
        ),
    )
    lines = report.render_section("load", report.load_results(tmp_path))
    table = [ln for ln in lines if ln.startswith("|")]
    assert table == [
        "| result | machine | install | already verified | CSV parse (cache miss) | cache hit | parse / hit "
        "| re-hash all files |",
        "|---|---|---|---|---|---|---|---|",
        "| [2026-12-01 11:20](bench/load-20261201-112016.json), fedcba9+ | AMD EPYC, 2 cores | 3.37 | 0.168 | 2 "
        "| 0.0091 | 220× | 0.083 |",
        "| [2026-11-25 10:00](bench/load-20261125-100000.json), 0123456 | Test CPU, 4 cores | 4.46 | 0.22 | 2.53 "
        "| 0.01 | 253× | 0.11 |",
    ]


def test_bench_report_puts_compared_settings_side_by_side_with_their_ratio(tmp_path):
    report = _import_script("bench_report")
    _write(
        tmp_path,
        _record(
            "pipeline",
            {
                "throughput": {
                    "tf_data_images_per_s": 18844,
                    "image_data_generator_images_per_s": 5396,
                    "tf_data_no_augmentation_images_per_s": 257150,
                }
            },
            "2026-11-25T10:00:00+00:00",
        ),
    )
    _write(
        tmp_path,
        _record(
            "cnn",
            {
                "onednn": {
                    "off": {"train_images_per_s": 498, "test_inference_s": 10.3},
                    "on": {"train_images_per_s": 791, "test_inference_s": 7.6},
                }
            },
            "2026-11-25T10:00:00+00:00",
        ),
    )
    recs = report.load_results(tmp_path)
    pipeline = report.render_section("pipeline", [r for r in recs if r["section"] == "pipeline"])
    assert "| same augmentation | 18,844 | 5,396 | 3.49× |" in pipeline
    cnn = report.render_section("cnn", [r for r in recs if r["section"] == "cnn"])
    assert "| training images/s | 498 | 791 | 1.59× |" in cnn
    assert "| test inference | 10.3 | 7.6 | 1.36× |" in cnn


def test_bench_report_puts_the_presets_of_one_run_side_by_side(tmp_path):
    report = _import_script("bench_report")
    preset = {
        "val_accuracy": 0.9898,
        "val_loss": 0.037,
        "train_time_s": 37.8,
        "epochs_run": 24,
        "best_epoch": 24,
        "peak_rss_mb": 565.0,
        "samples_per_s_median": 25000.0,
    }
    results = {
        "threads": 2,
        "peak_matmul_gflops": 143.8,
        "default": {**preset, "time_to_reference_accuracy_s": 6.0, "speedup_vs_reference": 89.3},
        "reference": {**preset, "val_accuracy": 0.9693, "train_time_s": 535.6, "epochs_run": 1200},
    }
    _write(tmp_path, _record("scratch", results, "2026-11-25T10:00:00+00:00"))
    lines = report.render_section("scratch", report.load_results(tmp_path))
    assert "| preset | `reference` | `default` |" in lines
    assert "| validation accuracy | 96.93 % | 98.98 % |" in lines
    assert "| training time | 535.6 | 37.8 |" in lines
    assert "- `default` reaches the reference's final accuracy after 6 s: 89.3× faster" in lines


def test_bench_report_shows_an_unknown_section_as_its_values(tmp_path):
    report = _import_script("bench_report")
    _write(tmp_path, _record("disk", {"read": {"mb_per_s": 812.5}, "files": 3}, "2026-11-25T10:00:00+00:00"))
    lines = report.render_section("disk", report.load_results(tmp_path))
    assert "| read.mb_per_s | 812.5 |" in lines and "| files | 3 |" in lines


def test_benchmarks_page_is_rendered_from_the_committed_result_files():
    report = _import_script("bench_report")
    recs = report.load_results(DOCS / "bench")
    assert recs, "docs/bench/ holds no result file"
    for rec in recs:
        assert rec["machine"]["cpu"] and rec["machine"]["cores"] >= 1, rec["_file"]
        assert rec["versions"]["python"] and rec["versions"]["numpy"] and rec["commit"], rec["_file"]
    assert (DOCS / "benchmarks.md").read_text() == report.render(recs), (
        "docs/benchmarks.md is not what docs/bench/*.json give: run python scripts/bench_report.py"
    )


def test_readme_results_table_is_rendered_from_the_committed_result_files():
    report = _import_script("bench_report")
    readme = README.read_text()
    assert report.RESULTS_START in readme and report.RESULTS_END in readme
    assert readme == report.with_results(readme, report.load_results(DOCS / "bench")), (
        "README.md's results table is not what docs/bench/*.json give: run python scripts/bench_report.py"
    )


def test_bench_report_renders_the_readme_results_table_from_the_newest_result_of_each(tmp_path):
    report = _import_script("bench_report")
    preset = {"val_accuracy": 0.9898, "train_time_s": 37.8}
    scratch = {"default": preset, "best": {**preset, "val_accuracy": 0.9929, "train_time_s": 211.5}}
    _write(tmp_path, _record("scratch", scratch, "2026-11-25T10:00:00+00:00", cpu="AMD EPYC", cores=2))
    cnn = _record(
        "cnn", {"default": {"val_accuracy": 0.99, "train_time_s": 900.0}}, "2026-11-25T11:00:00+00:00"
    )
    _write(tmp_path, cnn)
    cnn = _record(
        "cnn", {"default": {"val_accuracy": 0.9957, "train_time_s": 732.0}}, "2026-11-26T11:00:00+00:00"
    )
    cnn["settings"] = {"BENCH_CNN_SEED": "3"}
    _write(tmp_path, cnn)
    gpu = {
        "backends": ["jax"],
        "speed": [{"backend": "jax", "device": "GPU: NVIDIA H200", "batch_size": 256}],
        "accuracy": [{"backend": "jax", "seed": 1, "val_accuracy": 0.9962, "train_time_s": 90.0}],
    }
    _write(tmp_path, _record("gpu", gpu, "2026-12-01T12:00:00+00:00"))
    lines = report.render_results(report.load_results(tmp_path))
    assert (lines[0], lines[-1]) == (report.RESULTS_START, report.RESULTS_END)
    assert [ln for ln in lines if ln.startswith("|")][2:] == [
        "| `kit train scratch` | 98.98 % | 37.8 s | AMD EPYC, 2 cores "
        "| [scratch-20261125-100000.json](docs/bench/scratch-20261125-100000.json) |",
        "| `kit train scratch --preset best` | 99.29 % | 3.5 min | AMD EPYC, 2 cores "
        "| [scratch-20261125-100000.json](docs/bench/scratch-20261125-100000.json) |",
        "| `kit train cnn --seed 3` | 99.57 % | 12.2 min | Test CPU, 4 cores "
        "| [cnn-20261126-110000.json](docs/bench/cnn-20261126-110000.json) |",
        "| `kit train cnn --backend jax --seed 1` | 99.62 % | 90 s | GPU: NVIDIA H200 "
        "| [gpu-20261201-120000.json](docs/bench/gpu-20261201-120000.json) |",
        "| `kit remote train cnn` | not measured yet | — | Kaggle's T4s | — |",
    ]
    # nothing measured: every row says so, and no number appears
    empty = report.render_results([])
    assert [ln.split(" | ")[1] for ln in empty if ln.startswith("| `")] == ["not measured yet"] * 4
    readme = f"# kit\n\n{report.RESULTS_START}\nold table\n{report.RESULTS_END}\n\n## More\n"
    assert report.with_results(readme, []) == "\n".join(["# kit", "", *empty, "", "## More", ""])


def test_benchlib_records_machine_versions_and_commit_and_never_overwrites(tmp_path, monkeypatch):
    benchlib = _import_script("benchlib")
    monkeypatch.setenv("BENCH_CNN", "inference")
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    first = benchlib.write_result("cnn", {"x": 1.5}, out_dir=tmp_path, now=now)
    second = benchlib.write_result("cnn", {"x": 2.5}, out_dir=tmp_path, now=now)
    assert (first.name, second.name) == ("cnn-20261201-120000.json", "cnn-20261201-120000-2.json")
    rec = json.loads(first.read_text())
    assert rec["results"] == {"x": 1.5} and rec["section"] == "cnn" and rec["schema"] == 1
    assert rec["command"] == "BENCH_CNN=inference python scripts/bench.py cnn"
    assert rec["machine"]["cpu"] and rec["machine"]["cores"] >= 1
    assert {"python", "numpy", "tensorflow", "keras", "kit"} <= set(rec["versions"])
    assert re.fullmatch(r"[0-9a-f]{40}", rec["commit"]) and isinstance(rec["dirty"], bool)


# ----------------------------------------------------------------------------- the design studies


@pytest.mark.parametrize("script", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_script_shows_its_help(script: Path):
    proc = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and "Reproduces docs/decisions.md" in proc.stdout


def test_every_experiment_script_is_cited_in_decisions():
    decisions = (DOCS / "decisions.md").read_text()
    assert EXPERIMENTS
    uncited = [p.name for p in EXPERIMENTS if f"scripts/experiments/{p.name}" not in decisions]
    assert not uncited, f"docs/decisions.md does not say what these reproduce: {uncited}"


def test_the_kit_api_the_studies_call_exists():
    common = _import_script("_common")
    missing = [name for name in common.API if not callable(getattr(common.cnn(), name, None))]
    assert not missing, f"scripts/experiments/_common.py: the CNN module has no {missing}"
    cfg = common.cnn_preset("default", seed=3)
    assert cfg.seed == 3 and common.cnn_model().run_config({"seed": 3}).seed == 3


def test_bench_report_renders_the_throughput_settings_side_by_side(tmp_path):
    report = _import_script("bench_report")
    setting = {
        "batch_size": 64,
        "images_per_s": 1500.0,
        "images_per_s_median": 1400.0,
        "gflops": 66.6,
        "share_of_peak": 0.333,
    }
    results = {
        "peak_matmul_gflops": 200.0,
        "warmup_steps": 10,
        "timed_steps": 150,
        "repeats": 3,
        "settings": {
            "default": {**setting, "jit_compile": False, "warmup_s": 1.5},
            "batch256": {**setting, "batch_size": 256, "images_per_s": 3000.0},  # before the fields
            "jax": {**setting, "jit_compile": True, "warmup_s": 12.25},
        },
    }
    _write(tmp_path, _record("throughput", results, "2026-12-01T12:00:00+00:00"))
    lines = report.render_section("throughput", report.load_results(tmp_path))
    assert "Float32 matmul peak 200 GFLOP/s; the best of 3 windows of 150 steps after 10" in lines[4]
    assert [ln for ln in lines if ln.startswith("|")][2:] == [
        "| `default` | 64 | no | 1,500 | 1,400 | 1.00× | 66.6 | 33.30 % | 1.5 |",
        "| `batch256` | 256 |  | 3,000 | 1,400 | 2.00× | 66.6 | 33.30 % | — |",
        "| `jax` | 64 | yes | 1,500 | 1,400 | 1.00× | 66.6 | 33.30 % | 12.25 |",
    ]


def test_bench_report_renders_the_gpu_rows_per_backend_batch_and_precision(tmp_path):
    report = _import_script("bench_report")
    row = {"backend": "jax", "device": "GPU: NVIDIA H200", "batch_size": 256, "mixed_precision": True}
    results = {
        "backends": ["jax"],
        "speed": [
            {**row, "jit_compile": True, "images_per_s": 37800.0, "seconds_per_epoch": 1.0, "warmup_s": 40.5},
            {**row, "variant": "mixed, autotune off", "jit_compile": True}
            | {"images_per_s": 18900.0, "seconds_per_epoch": 2.0, "warmup_s": 10.0},
        ],
        "accuracy": [
            {"backend": "jax", "seed": 1, "val_accuracy": 0.9962, "val_loss": 0.0131}
            | {"train_time_s": 90.0, "time_to_99_4_s": 30.0}
        ],
    }
    _write(tmp_path, _record("gpu", results, "2026-12-01T12:00:00+00:00"))
    rows = [ln for ln in report.render_section("gpu", report.load_results(tmp_path)) if ln.startswith("|")]
    assert rows[2:4] == [
        "| jax | GPU: NVIDIA H200 | 256 | on |  | yes | 37,800 | 1 | 40.5 |",
        "| jax | GPU: NVIDIA H200 | 256 | on | mixed, autotune off | yes | 18,900 | 2 | 10 |",
    ]
    assert rows[6] == "| jax | 1 | 99.62 % | 0.0131 | 1.5 min | 0.5 min |"
    _write(
        tmp_path, _record("gpu", {"backends": [], "speed": [], "accuracy": []}, "2026-12-02T12:00:00+00:00")
    )
    assert "No backend saw a GPU on this machine." in report.render_section(
        "gpu", report.load_results(tmp_path)
    )
    # a failed row is shown as failed, and the rows after it still are
    failed = {
        "backends": ["jax", "torch"],
        "speed": [
            {**row, "backend": "torch", "batch_size": 64, "error": "throughput bench child failed (exit 1)"},
            {**row, "jit_compile": True, "images_per_s": 37800.0, "seconds_per_epoch": 1.0},
        ],
        "accuracy": [{"backend": "torch", "seed": 1, "error": "exit 1"}],
        "cut_short": True,
    }
    _write(tmp_path, _record("gpu", failed, "2026-12-03T12:00:00+00:00"))
    rows = [ln for ln in report.render_section("gpu", report.load_results(tmp_path)) if ln.startswith("|")]
    assert rows[2:4] == [
        "| torch | GPU: NVIDIA H200 | 64 | on |  |  | failed: throughput bench child failed (exit 1) |  |  |",
        "| jax | GPU: NVIDIA H200 | 256 | on |  | yes | 37,800 | 1 | — |",
    ]
    assert rows[6] == "| torch | 1 | failed: exit 1 |  |  |  |"
    lines = report.render_section("gpu", report.load_results(tmp_path))
    assert lines.count("Cut short by its time limit: the rows above are the ones measured before it.") == 1


def test_speed_ab_reads_each_variant_as_config_fields():
    ab = _import_script("speed_ab")
    fields = ab.variant("width=24 batch_size=128 fused_bn=false optimizer=sgd")
    assert fields == {"width": 24, "batch_size": 128, "fused_bn": False, "optimizer": "sgd"}
    cfg = dataclasses.replace(_import_script("_common").cnn_preset("default"), **fields)
    assert (cfg.width, cfg.batch_size, cfg.fused_bn, cfg.optimizer) == (24, 128, False, "sgd")


def test_bench_gpu_cut_short_by_sigterm_keeps_the_rows_measured(tmp_path):
    """scripts/device_gpu.sh runs each bench under `timeout`: its SIGTERM must leave a result
    with the rows measured so far, not lose the section."""
    import signal

    code = (
        "import json, sys, time\n"
        "sys.path.insert(0, 'scripts')\n"
        "import bench_gpu\n"
        "bench_gpu._gpu_backends = lambda: ['jax']\n"
        "done = []\n"
        "def child(*args, **kwargs):\n"
        "    if done:\n"
        "        print('SLEEPING', flush=True)\n"
        "        time.sleep(60)\n"
        "    done.append(1)\n"
        "    return {'device': 'GPU: fake', 'jit_compile': True, 'images_per_s': 1000.0}\n"
        "bench_gpu.bt._child = child\n"
        "print('RESULT ' + json.dumps(bench_gpu.run()), flush=True)\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("SLEEPING"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=30) == 0
    result = json.loads(rest.split("RESULT ")[1])
    assert result["cut_short"] is True
    assert [(r["batch_size"], r["mixed_precision"], r["images_per_s"]) for r in result["speed"]] == [
        (64, False, 1000.0)
    ]


def test_bench_gpu_measures_the_variant_after_the_first_batch_and_reads_runs_side_by_side(
    tmp_path, monkeypatch
):
    """The device's minutes are few: the variant row comes before the larger batch; a run of
    the side-by-side step is read from its folder, finished or cut short."""
    gpu = _import_script("bench_gpu")
    calls = []

    def child(code, opts, env):
        calls.append((json.loads(opts), env))
        return {"device": "GPU: fake", "jit_compile": True, "images_per_s": 1000.0, "warmup_s": 3.0}

    monkeypatch.setattr(gpu.bt, "_child", child)
    monkeypatch.setattr(gpu, "BATCHES", (64, 512))
    out = {"speed": [], "accuracy": []}
    gpu._measure(["jax"], out)
    assert [(r["batch_size"], r["mixed_precision"], r.get("variant", "")) for r in out["speed"]] == [
        (64, False, ""),
        (64, True, ""),
        (64, True, "mixed, autotune off"),
        (512, False, ""),
        (512, True, ""),
    ]
    assert calls[2][1]["XLA_FLAGS"] == "--xla_gpu_autotune_level=0" and out["speed"][2]["warmup_s"] == 3.0

    done, cut = tmp_path / "cnn-1-s21", tmp_path / "cnn-2-s1"
    for folder, cfg in ((done, ("jax", "best", 21, False)), (cut, ("torch", "default", 1, True))):
        folder.mkdir()
        keys = ("backend", "preset", "seed", "mixed_precision")
        (folder / "config.json").write_text(json.dumps(dict(zip(keys, cfg))))
        history = "epoch,val_accuracy,seconds\n1,0.98,40.0\n2,0.99,2.0\n3,0.995,3.0\n"
        (folder / "history.csv").write_text(history)
    (done / "metrics.json").write_text(json.dumps({"val_accuracy": 0.996, "train_time_s": 50.0}))
    assert gpu._spec_of(done) == gpu._canonical("jax:best:021") == "jax:best:21"
    assert gpu._spec_of(cut) == "torch:default:1:mixed"
    rows = [{"spec": "jax:best:21", "exit": 0, **gpu._run_summary(done)}]
    rows.append({"spec": "torch:default:1:mixed", "exit": -15, **gpu._run_summary(cut)})
    assert rows[1]["epochs"] == 3 and rows[1]["first_epoch_s"] == 40.0 and rows[1]["median_epoch_s"] == 2.5
    report = _import_script("bench_report")
    results = {"backends": ["jax"], "speed": [], "accuracy": [], "together": rows, "together_wall_s": 61.0}
    _write(tmp_path, _record("gpu", results, "2026-12-01T12:00:00+00:00"))
    lines = report.render_section("gpu", report.load_results(tmp_path))
    assert "Side by side on the one card (61 s wall):" in lines
    assert [ln for ln in lines if ln.startswith("|")][2:] == [
        "| `jax:best:21` | 0 | 3 | 40 | 2.5 | 99.60 % |",
        "| `torch:default:1:mixed` | -15 | 3 | 40 | 2.5 | (99.50 %, unfinished) |",
    ]
