"""kit.report: the HTML report from small fake run folders over the fixture competition."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kit import config, data, metrics, runs
from kit.cli import cli
from kit.errors import KitError
from kit.io import write_json
from kit.report import charts, views
from kit.report import page as report

# Pixel sizes of each chart, written out by hand (not read from charts.FIGSIZE): a layout
# change that alters them must be a deliberate change here too.
SIZES = {
    "curves": (1100, 400),
    "confusion": (1100, 500),
    "per-class": (550, 400),
    "calibration": (550, 600),
    "augment": (720, 900),
    "leaderboard": (1100, 400),
}


def _grid_px(n_tiles: int) -> tuple[int, int]:
    """Errors / disagreement grids: 8 tiles a row, at most 4 rows, 150 px a row + 40 px title."""
    return 1100, 40 + 150 * min(4, -(-n_tiles // 8))


# ----------------------------------------------------------------------------- helpers


def _val_labels() -> tuple[np.ndarray, str, str]:
    ds, sp = data.load_split()
    return ds.y_train[sp.val_idx], sp.hash, ds.checksum


def _fake_proba(y: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """(n, 10) float32 probabilities whose argmax equals y on about `accuracy` of the rows."""
    rng = np.random.default_rng(seed)
    pred = y.astype(np.int64).copy()
    flip = rng.random(len(y)) > accuracy
    pred[flip] = (pred[flip] + rng.integers(1, 10, flip.sum())) % 10
    logits = rng.normal(size=(len(y), 10)) + 5.0 * np.eye(10)[pred]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _fake_run(
    model: str,
    seed: int,
    *,
    accuracy: float = 0.9,
    history: bool = True,
    val: bool = True,
    test: bool = True,
    finished: bool = True,
    extra_config=None,
    split_hash: str | None = None,
) -> runs.Run:
    y, hash_, checksum = _val_labels()
    run = runs.create(model, seed)
    run.write_config({"model": model, "seed": seed, "preset": "tiny", "epochs": 3, **(extra_config or {})})
    if history:
        run.write_history(
            [
                {
                    "epoch": e,
                    "loss": 1.0 / e,
                    "accuracy": 1 - 0.3 / e,
                    "val_loss": 1.2 / e,
                    "val_accuracy": 1 - 0.35 / e,
                    "lr": 0.1 * 0.5**e,
                    "seconds": 0.5,
                }
                for e in (1, 2, 3)
            ]
        )
    proba = _fake_proba(y, accuracy, seed)
    if val:
        run.write_predictions(
            proba, _fake_proba(np.zeros(config.competition().n_test, np.uint8), 0.5, seed) if test else None
        )
    if finished:
        run.finish(
            {
                "model": model,
                "seed": seed,
                "epochs_run": 3,
                "wall_time_s": 12.5 + seed,
                "val_accuracy": float(np.mean(proba.argmax(1) == y)),
                "val_loss": float(-np.mean(np.log(proba[np.arange(len(y)), y]))),
                "data_checksum": checksum,
                "split_hash": split_hash or hash_,
                "n_val": len(y),
                "n_test": config.competition().n_test,
            }
        )
    return run


class _Page(HTMLParser):
    """Collects <img> attributes, table cells by row, and the text of notes."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.rows, self.notes = [], [], []
        self._cell = self._note = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "p" and a.get("class") == "note":
            self._note = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
            self._cell = None
        elif tag == "p" and self._note is not None:
            self.notes.append(self._note)
            self._note = None

    def handle_data(self, d):
        if self._cell is not None:
            self._cell += d
        if self._note is not None:
            self._note += d


# ----------------------------------------------------------------------------- independent checks


def test_confusion_matches_sklearn():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    assert np.array_equal(metrics.confusion(y, p), confusion_matrix(y, p, labels=range(10)))


def test_ece_of_a_hand_made_case():
    # 10 rows at confidence 0.9 with 5 right: |0.5 - 0.9| = 0.4 on all of them
    # + 10 rows at confidence 0.6 with 6 right: calibrated, 0.  ECE = (10*0.4 + 10*0) / 20 = 0.2
    def rows(conf, n):
        p = np.full((n, 10), (1 - conf) / 9)
        p[:, 0] = conf
        return p

    proba = np.vstack([rows(0.9, 10), rows(0.6, 10)])
    y = np.array([0] * 5 + [1] * 5 + [0] * 6 + [1] * 4)
    conf, acc, count, ece = metrics.reliability(proba, y)
    assert ece == pytest.approx(0.2)
    assert count.sum() == 20 and count[np.ceil(0.9 * metrics.ECE_BINS).astype(int) - 1] == 10
    assert np.nanmax(acc) == pytest.approx(0.6)


# ----------------------------------------------------------------------------- the report


def test_report_references_every_image_with_the_right_size(fixture_data):
    a, b = _fake_run("scratch", 1), _fake_run("scratch", 2, accuracy=0.8)
    ens = _fake_run("ensemble", 0, accuracy=0.95, extra_config={"members": [a.name, b.name]})
    index = report.build([a.name, str(ens.path)])
    out = index.parent
    assert out.parent == config.reports_dir()
    page = _Page(index.read_text())
    srcs = [i["src"] for i in page.images]
    slug_a, slug_e = a.name, ens.name
    expected = {
        f"{s}-{k}.png"
        for s in (slug_a, slug_e)
        for k in ("curves", "confusion", "per-class", "calibration", "errors")
    }
    expected.add(f"{slug_e}-disagree.png")
    assert set(srcs) == expected and len(srcs) == len(expected)
    assert {p.name for p in out.iterdir()} == expected | {"index.html"}
    y, _, _ = _val_labels()
    n_wrong = {r.name: int(np.sum(r.val_proba().argmax(1) != y)) for r in (a, ens)}
    votes = np.stack([a.val_proba().argmax(1), b.val_proba().argmax(1)])
    sizes = {
        **{
            f"{s}-{k}.png": SIZES[k]
            for s in (slug_a, slug_e)
            for k in ("curves", "confusion", "per-class", "calibration")
        },
        **{f"{r}-errors.png": _grid_px(n) for r, n in n_wrong.items()},
        f"{slug_e}-disagree.png": _grid_px(int(np.sum(votes[0] != votes[1]))),
    }
    assert all(0 < n < 32 for n in n_wrong.values())  # the fake runs make partly filled grids
    for img in page.images:
        w, h = sizes[img["src"]]
        with Image.open(out / img["src"]) as im:
            im.load()  # decodes the whole image, not only the header
            assert im.format == "PNG" and im.size == (w, h), img["src"]
        assert (int(img["width"]), int(img["height"])) == (w, h)
        assert img["alt"]
    # nothing half-written left beside it
    assert [p.name for p in config.reports_dir().iterdir()] == [out.name]


def test_summary_table_matches_metrics(fixture_data):
    # (a "cnn" run would pull in TensorFlow for the augmentation grid: tested on its own below)
    made = [
        _fake_run("scratch", 3),
        _fake_run("scratch", 4, accuracy=0.97, extra_config={"arch": "seed", "preset": None}),
    ]
    index = report.build([str(r.path) for r in made])
    page = _Page(index.read_text())
    header = page.rows[0]
    assert header == views.SUMMARY_HEADER
    body = {r[0]: dict(zip(header, r)) for r in page.rows[1:3]}
    for run in made:
        m = json.loads((run.path / "metrics.json").read_text())
        row = body[run.name]
        assert float(row["val accuracy"]) == pytest.approx(m["val_accuracy"], abs=5e-5)
        assert float(row["val loss"]) == pytest.approx(m["val_loss"], abs=5e-5)
        assert row["wall time"] == f"{m['wall_time_s']:.1f} s"
        assert (row["model"], row["seed"], row["epochs"]) == (m["model"], str(m["seed"]), "3")
        assert row["status"] == "finished"
    assert body[made[0].name]["preset / arch"] == "tiny"
    assert body[made[1].name]["preset / arch"] == "seed"


def test_missing_pieces_give_notes_not_a_crash(fixture_data):
    bare = _fake_run("scratch", 5, history=False, val=False, finished=False)
    no_test = _fake_run("scratch", 6, test=False, history=False)
    index = report.build([bare.name, no_test.name])
    page = _Page(index.read_text())
    assert page.notes == [
        f"no submissions yet ({config.submissions_dir()}/ledger.db is empty or missing): `kit submit` records them",
        "unfinished: no metrics.json (it crashed or is still running); what it wrote so far is shown",
        "no history.csv yet: no training curves",
        "no val_proba.npy: no confusion matrix, errors or calibration",
        "no test_proba.npy: no test predictions, nothing to submit from this run",
        "no history.csv yet: no training curves",
        "no test_proba.npy: no test predictions, nothing to submit from this run",
    ]
    # the run with validation predictions still gets its validation charts
    assert {i["src"] for i in page.images} == {
        f"{no_test.name}-{k}.png" for k in ("confusion", "per-class", "calibration", "errors")
    }
    row = next(r for r in page.rows if r and r[0] == bare.name)
    assert row[4] == "0 of 3"  # epochs: how far it got, of how many
    assert row[-3:] == ["—", "—", "unfinished"]


def test_another_split_is_reported_and_skipped(fixture_data):
    run = _fake_run("scratch", 7, split_hash="0123456789abcdef")
    page = _Page(report.build([run.name]).read_text())
    _, hash_, _ = _val_labels()
    assert (
        f"trained on another validation split (run split_hash 0123456789abcdef, installed "
        f"data {hash_}): validation charts skipped"
    ) in page.notes
    assert [i["src"] for i in page.images] == [f"{run.name}-curves.png"]


def test_not_a_run_is_a_clear_error(fixture_data, tmp_path):
    folder = tmp_path / "holiday-photos"
    folder.mkdir()
    with pytest.raises(KitError) as e:
        report.build([str(folder)])
    assert str(e.value) == f"{folder} is not a run folder (it has no config.json)"
    result = CliRunner().invoke(cli, ["report", str(folder)])
    assert result.exit_code == 1
    assert result.output == f"Error: {folder} is not a run folder (it has no config.json)\n"
    assert not config.reports_dir().exists()  # nothing written


def test_no_runs_at_all_says_what_to_do(fixture_data):
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: no finished runs in {config.runs_dir()}: train one first "
        "(`kit train scratch`), or name a run folder: `kit report RUN`\n"
    )


def test_cli_defaults_to_latest_run_of_each_model_and_prints_the_path(fixture_data):
    old = _fake_run("scratch", 1)
    new = _fake_run("scratch", 2)
    _fake_run("scratch", 3, finished=False)  # crashed: not the latest finished
    ens = _fake_run("ensemble", 0, extra_config={"members": [old.name, new.name]})
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 0, result.output
    index = Path(result.output.strip())
    assert index.name == "index.html" and index.exists()
    rows = _Page(index.read_text()).rows
    assert [r[0] for r in rows[1:3]] == [new.name, ens.name]


def test_pngs_are_byte_identical_between_builds(fixture_data, tmp_path):
    a, b = _fake_run("scratch", 1), _fake_run("scratch", 2)
    ens = _fake_run("ensemble", 0, extra_config={"members": [a.name, b.name]})
    one = report.build([ens.name, a.name], out=tmp_path / "one").parent
    two = report.build([ens.name, a.name], out=tmp_path / "two").parent
    pngs = sorted(p.name for p in one.glob("*.png"))
    assert pngs and pngs == sorted(p.name for p in two.glob("*.png"))
    for name in pngs:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_out_must_be_new_or_empty(fixture_data, tmp_path):
    run = _fake_run("scratch", 1)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(KitError, match="already exists and is not an empty folder"):
        report.build([run.name], out=taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_a_failure_mid_report_leaves_nothing(fixture_data, monkeypatch):
    run = _fake_run("scratch", 1)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(charts, "plot_calibration", boom)
    with pytest.raises(RuntimeError):
        report.build([run.name])
    assert list(config.reports_dir().iterdir()) == []


def test_leaderboard_history_from_the_ledger(fixture_data):
    from kit import ledger

    run = _fake_run("scratch", 1)
    first = ledger.add("submissions/a.csv", "ab" * 32, "first try", [run.name], 0.9812)
    ledger.update(first, status="complete", public_score=0.97857, kaggle_ref=11)
    ledger.add("submissions/b.csv", "cd" * 32, "second", [run.name], 0.9901, status="submitted")
    out = report.build([run.name]).parent
    page = _Page((out / "index.html").read_text())
    assert "leaderboard.png" in {i["src"] for i in page.images}
    with Image.open(out / "leaderboard.png") as im:
        assert im.size == SIZES["leaderboard"]
    table = [r for r in page.rows if r and r[0] in ("1", "2")]
    assert [(r[2], r[3], r[4], r[5], r[6]) for r in table] == [
        ("first try", run.name, "0.98120", "0.97857", "complete"),
        ("second", run.name, "0.99010", "—", "submitted"),
    ]


def test_augmentation_grid_for_a_cnn_run(fixture_data):
    pytest.importorskip("tensorflow")
    run = _fake_run("cnn", 1, extra_config={"arch": "default", "rotation": 15.0})
    out = report.build([run.name]).parent
    page = _Page((out / "index.html").read_text())
    assert f"{run.name}-augment.png" in {i["src"] for i in page.images}
    with Image.open(out / f"{run.name}-augment.png") as im:
        im.load()
        assert im.size == SIZES["augment"]
    assert "rotation ±15°" in (out / "index.html").read_text()


def test_damaged_files_give_notes_not_a_crash(fixture_data):
    run = _fake_run("scratch", 8)
    (run.path / "metrics.json").write_text('{"val_accuracy": 0.9,\n  oops}')
    (run.path / "val_proba.npy").write_bytes(b"\x93NUMPY truncated")
    (run.path / "history.csv").write_bytes(b'epoch,loss\n1,"unterminated\n')
    page = _Page(report.build([run.name]).read_text())
    run_notes = page.notes[1:]  # after the ledger's
    assert run_notes[0] == (
        f"{run.path}/metrics.json: line 2, column 3: not valid JSON "
        "(Expecting property name enclosed in double quotes)"
    )
    assert run_notes[1].startswith(f"{run.path}/history.csv is unreadable (")
    assert run_notes[2].startswith(f"{run.path}/val_proba.npy is unreadable (")
    assert page.images == []


def test_ensemble_members_table(fixture_data):
    from kit.ensemble import WEIGHTS

    a, b = _fake_run("scratch", 1), _fake_run("scratch", 2)
    ens = _fake_run("ensemble", 0, extra_config={"members": [a.name, b.name]})
    write_json(ens.path / WEIGHTS, {"method": "fitted", "weights": {a.name: 0.25, b.name: 0.75}})
    m = json.loads((ens.path / "metrics.json").read_text())
    write_json(ens.path / "metrics.json", {**m, "member_val_accuracy": {a.name: 0.91, b.name: 0.92}})
    rows = _Page(report.build([ens.name]).read_text()).rows
    i = rows.index(["member", "weight", "val accuracy"])
    assert rows[i + 1 : i + 3] == [[a.name, "0.2500", "0.9100"], [b.name, "0.7500", "0.9200"]]


def test_without_installed_data_the_curves_still_come(isolated_dirs):
    run = runs.create("scratch", 1)
    run.write_config({"model": "scratch", "seed": 1, "epochs": 1})
    run.write_history(
        [
            {
                "epoch": 1,
                "loss": 0.5,
                "accuracy": 0.8,
                "val_loss": 0.6,
                "val_accuracy": 0.7,
                "lr": 0.01,
                "seconds": 1.0,
            }
        ]
    )
    run.write_predictions(np.full((120, 10), 0.1, np.float32), None)
    page = _Page(report.build([run.name]).read_text())
    assert [i["src"] for i in page.images] == [f"{run.name}-curves.png"]
    assert page.notes[0].startswith("validation images unavailable (")
    assert page.notes[0].endswith("): charts that need labels are skipped")


def test_the_same_run_twice_is_reported_once(fixture_data):
    run = _fake_run("scratch", 1)
    page = _Page(report.build(["scratch", run.name, str(run.path)]).read_text())
    assert [r[0] for r in page.rows[1:] if r and r[0].startswith("scratch-")] == [run.name]


def test_two_reports_in_the_same_second_both_land(fixture_data, monkeypatch):
    run = _fake_run("scratch", 1)
    monkeypatch.setattr(report, "utc_stamp", lambda now=None: "20260101-000000")
    first = report.build([run.name]).parent
    # something filled the second name between our claim and our rename
    real_out_dir = report._out_dir
    calls = []

    def racy(out):
        chosen = real_out_dir(out)
        if not calls:
            assert chosen.is_dir() and not any(chosen.iterdir())  # claimed, empty
            (chosen / "index.html").write_text("the other report")
        calls.append(chosen)
        return chosen

    monkeypatch.setattr(report, "_out_dir", racy)
    second = report.build([run.name]).parent
    assert first.name == "20260101-000000"
    assert [c.name for c in calls] == ["20260101-000000-2", "20260101-000000-3"]
    assert second == calls[1] and (calls[0] / "index.html").read_text() == "the other report"
    assert sorted(p.name for p in config.reports_dir().iterdir()) == [
        "20260101-000000",
        "20260101-000000-2",
        "20260101-000000-3",
    ]


def test_markup_in_a_run_name_or_message_is_text(fixture_data):
    from kit import ledger

    run = _fake_run("scratch", 1)
    hostile = run.path.parent / "scratch-<script>alert(1)"
    run.path.rename(hostile)
    ledger.add("submissions/a.csv", "ab" * 32, "<script>alert(2)</script>", [hostile.name], 0.9)
    text = report.build([str(hostile)]).read_text()
    assert "<script" not in text.lower()  # checked on the text itself, not through a parser
    assert "&lt;script&gt;alert(1)" in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    page = _Page(text)
    assert page.rows[1][0] == hostile.name  # the parser reads back the name as it was
    assert [r[2] for r in page.rows if r and r[0] == "1"] == ["<script>alert(2)</script>"]
