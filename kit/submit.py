"""Submission CSVs and their upload: write, validate, submit, wait for the score, record it.

A submission is `submissions/<UTC YYYYmmdd-HHMMSS>_<run name>.csv`

    ImageId,Label          header, exactly
    1,2                    one row per test image: ImageId 1..n_test (each once), Label 0-9
    ...

with a sidecar `<same name>.json`: the runs behind it and their configs, validation accuracy,
data checksum, split hash and the CSV's sha256. A file is validated before it is written and
again before it is uploaded; it is never overwritten.

Upload (`submit`), in this order so that nothing is lost whatever fails:
    validate -> refuse a sha256 already uploaded (unless force) -> record 'pending' in the ledger
    -> check the day's remaining submissions -> upload (kit.kaggle: retries 429/5xx/drops itself)
    -> record 'submitted' + Kaggle's ref -> poll the submission list until scored -> record the score.
A failure after 'pending' leaves the CSV and the record: `kit submit --retry` sends it later.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit import config, ledger, runs
from kit.errors import KitError
from kit.io import free_name, read_json, sha256_file, utc_iso, utc_stamp, write_json
from kit.kaggle import client, competitions
from kit.runs import Run

HEADER = "ImageId,Label"
_INT = re.compile(r"[0-9]+")
_DIGIT = re.compile(r"[0-9]")


@dataclass
class WaitConfig:
    """Polling Kaggle's submission list for the score: exponential backoff, bounded."""

    first_s: float = 1.0  # first poll after this long (scoring takes seconds to minutes)
    factor: float = 1.5  # each wait this much longer than the one before ...
    max_s: float = 30.0  # ... but never longer than this
    timeout_s: float = 600.0  # then stop waiting and say where to look


def submissions_url() -> str:
    return f"https://www.kaggle.com/competitions/{config.competition().slug}/submissions"


# ----------------------------------------------------------------------------- validation


def validate(path: Path, n_test: int | None = None) -> int:
    """Check a submission CSV; return its row count or raise KitError naming line and column.

    Rules: header `ImageId,Label`; exactly n_test rows (default: the competition's); ImageId an
    integer in 1..n_test, each exactly once; Label an integer 0-9.
    """
    import pandas as pd

    path = Path(path)
    n_test = n_test or config.competition().n_test
    if not path.is_file():
        raise KitError(f"{path}: no such submission file")
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise KitError(f"{path}: not a UTF-8 text CSV ({e.reason} at byte {e.start})") from None
    if header != HEADER:
        raise KitError(f"{path}: line 1: header is {header!r}, expected {HEADER!r}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.ParserError as e:
        # pandas says e.g. "Expected 2 fields in line 7, saw 3"
        raise KitError(f"{path}: {e}; each row must be `ImageId,Label`") from None
    if len(df) != n_test:
        raise KitError(
            f"{path}: has {len(df)} data rows, expected exactly {n_test} "
            f"(one per test image, ImageId 1..{n_test})"
        )
    for col, colno, pattern, what in (
        ("ImageId", 1, _INT, "a positive integer"),
        ("Label", 2, _DIGIT, "a digit 0-9"),
    ):
        values = df[col].str.strip()
        bad = ~values.str.fullmatch(pattern)
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise KitError(f"{path}: line {i + 2}, column {colno} ({col}): {df[col].iloc[i]!r} is not {what}")
    ids = df["ImageId"].astype(np.int64).to_numpy()
    out = (ids < 1) | (ids > n_test)
    if out.any():
        i = int(np.argmax(out))
        raise KitError(f"{path}: line {i + 2}, column 1 (ImageId): {ids[i]} is outside 1..{n_test}")
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.argmax(ids == ids[i]))
        missing = np.setdiff1d(np.arange(1, n_test + 1), ids)
        raise KitError(
            f"{path}: line {i + 2}, column 1 (ImageId): {ids[i]} repeats line {first + 2}; "
            f"ImageId {', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''} "
            f"{'is' if len(missing) == 1 else 'are'} missing"
        )
    return len(df)


# ----------------------------------------------------------------------------- writing


def finished_at(run: Run) -> tuple[str, int]:
    """When `run` finished: its metrics.json's finished_utc, then the file's time to break ties
    within a second (both grow with time; a copied folder keeps the first)."""
    return run.metrics.get("finished_utc", ""), (run.path / runs.METRICS).stat().st_mtime_ns


def default_run() -> Run:
    """The run that finished last, of any kind: today's models are not passed over for
    yesterday's ensemble."""
    every = runs.all_runs()
    if not every:
        raise KitError(
            f"no finished runs in {config.runs_dir()}; train one first "
            f"(`kit train cnn`) or name a run: `kit predict RUN`"
        )
    return max(every, key=finished_at)


def describe(run: Run) -> list[str]:
    """What `kit predict` and `kit submit` say about the run they use: its validation accuracy
    and members, then a warning naming finished runs newer than it (than its newest member, for
    an ensemble) that are in none of it."""
    members = run.config.get("members") or []
    accuracy = f"{run.metrics.get('val_accuracy', float('nan')):.4f}"
    if run.config.get("groups"):  # a group's ensemble: judged out of fold, members named by group
        head = f"run {run.name}: out-of-fold accuracy {accuracy}, {len(members)} members of "
        lines = [head + ", ".join(run.config["groups"])]
    else:
        line = f"run {run.name}: val accuracy {accuracy}"
        lines = [line + (f", members {', '.join(members)}" if members else "")]
    inside = {run.name, *members}
    siblings = {r.name: r for r in runs.all_runs(run.path.parent)}
    since = max((finished_at(siblings[n]) for n in members if n in siblings), default=finished_at(run))
    newer = [r.name for r in siblings.values() if r.name not in inside and finished_at(r) > since]
    if newer:
        which = "its newest member" if members else "it"
        lines.append(
            f"Warning: {', '.join(newer)} finished after {which} and {'is' if len(newer) == 1 else 'are'} "
            f"in none of it: `kit ensemble` to include {'it' if len(newer) == 1 else 'them'}, or name "
            f"the run to submit: `kit predict RUN`"
        )
    return lines


def run_names(run: Run) -> list[str]:
    """The runs behind `run`'s predictions: itself, then its members if it is an ensemble."""
    return [run.name, *run.config.get("members", [])]


def write_submission(run: Run, out_dir: Path | None = None) -> Path:
    """Write `run`'s test predictions as a new timestamped CSV + sidecar .json; return the CSV path."""
    runs.require_run(run)
    n_test = config.competition().n_test
    if not run.file(runs.TEST_PROBA).exists():
        raise KitError(f"{run.path} has no {runs.TEST_PROBA}: it cannot make a submission")
    proba = run.test_proba()
    if proba.shape != (n_test, config.N_CLASSES):
        raise KitError(
            f"{run.path}: test predictions have shape {proba.shape}, but "
            f"{config.competition().slug} has {n_test} test images; was it trained on "
            f"other data (check KIT_COMPETITION / --data-dir)?"
        )
    labels = proba.argmax(axis=1)
    text = HEADER + "\n" + "".join(f"{i},{k}\n" for i, k in enumerate(labels, start=1))

    out_dir = Path(out_dir or config.submissions_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stamp}_", suffix=".tmp.csv", dir=out_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a submission is an ordinary file
        validate(tmp, n_test)  # refuse to publish a file we would refuse to upload
        path = _link_new(tmp, out_dir, f"{stamp}_{run.name}")
    finally:
        tmp.unlink(missing_ok=True)

    names = run_names(run)
    siblings = {n: runs.Run(run.path.parent / n) for n in names}
    m = run.metrics
    write_json(
        path.with_suffix(".json"),
        {
            "file": path.name,
            "sha256": sha256_file(path),
            "created_utc": utc_iso(),
            "competition": config.competition().slug,
            "runs": names,
            "configs": {n: r.config for n, r in siblings.items()},
            "val_accuracy": m.get("val_accuracy"),
            "member_val_accuracy": {n: siblings[n].metrics.get("val_accuracy") for n in names[1:]},
            "data_checksum": m.get("data_checksum"),
            "split_hash": m.get("split_hash"),
            "n_rows": n_test,
        },
    )
    return path


def _link_new(tmp: Path, out_dir: Path, stem: str) -> Path:
    """Give `tmp` a name `stem.csv` (or `stem-2.csv`, ...) that did not exist: never overwrite."""

    def make(name: str) -> Path:
        os.link(tmp, out_dir / name)  # atomic, and fails if the name is taken (rename would replace)
        return out_dir / name

    return free_name(make, stem, ".csv")


def sidecar(path: Path) -> dict:
    """The sidecar .json of a submission CSV, or {} for a file written elsewhere (or a damaged one)."""
    try:
        return read_json(Path(path).with_suffix(".json"))
    except KitError:
        return {}


def default_message(path: Path) -> str:
    """e.g. `ensemble-20261125-170102-s0 val 0.9921 = cnn-... 0.9901 + scratch-... 0.9812`."""
    side = sidecar(path)
    if not side.get("runs"):
        return f"{Path(path).name} (kit)"
    msg = f"{side['runs'][0]} val {side.get('val_accuracy', float('nan')):.4f}"
    members = side.get("member_val_accuracy") or {}
    if members:
        msg += " = " + " + ".join(f"{n} {a:.4f}" if a is not None else n for n, a in members.items())
    return msg[:500]  # Kaggle limits the description's length


def latest_submission_for(run: Run) -> Path | None:
    """The newest CSV in submissions/ written from `run`, if any."""
    found = [
        p
        for p in sorted(config.submissions_dir().glob("*.csv"))
        if not p.name.startswith(".") and (sidecar(p).get("runs") or [None])[0] == run.name
    ]
    return found[-1] if found else None


# ----------------------------------------------------------------------------- upload


def submit(
    path: Path | None = None,
    message: str | None = None,
    force: bool = False,
    wait: bool = True,
    wait_cfg: WaitConfig | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Upload one submission CSV (default: the latest run's, written if needed); return its ledger record."""
    if path is None:
        run = default_run()
        for line in describe(run):
            echo(line)
        path = latest_submission_for(run)
        if path is None:
            path = write_submission(run)
            echo(f"wrote {path}")
    path = Path(path)
    validate(path)
    sha = sha256_file(path)
    message = message or default_message(path)

    previous = ledger.by_sha256(sha)
    sent = [r for r in previous if r["status"] in ("submitted", "complete")]
    if sent and not force:
        r = sent[-1]
        score = f", public score {r['public_score']:.5f}" if r["public_score"] is not None else ""
        raise KitError(
            f"{path.name} was already submitted on {r['created_utc']} (ledger #{r['id']}, "
            f"Kaggle ref {r['kaggle_ref']}{score}); use --force to submit the same file again"
        )
    waiting = [r for r in previous if r["status"] == "pending"]
    if waiting:
        rid = waiting[-1]["id"]
    else:
        side = sidecar(path)
        rid = ledger.add(path, sha, message, side.get("runs", []), side.get("val_accuracy"))
    return _upload(ledger.get(rid), message, wait, wait_cfg, echo)


def retry(
    wait: bool = True, wait_cfg: WaitConfig | None = None, echo: Callable[[str], None] = print
) -> list[dict]:
    """Send every 'pending' ledger record (a failed or refused upload). Returns their records."""
    todo = ledger.pending()
    if not todo:
        echo("no pending submissions")
        return []
    # An upload whose answer was lost (dropped connection after Kaggle accepted it) is already on
    # Kaggle: match it by file name and description instead of uploading it a second time.
    known = {r["kaggle_ref"] for r in ledger.records() if r["kaggle_ref"] is not None}
    remote = [s for s in competitions.list_submissions() if s.ref not in known]
    done = []
    for rec in todo:
        match = [
            s for s in remote if s.file_name == Path(rec["file"]).name and s.description == rec["message"]
        ]
        if match:
            s = match[0]
            remote.remove(s)
            ledger.attach_ref(rec["id"], s.ref, rec["message"])
            echo(f"ledger #{rec['id']} {Path(rec['file']).name} was already uploaded (Kaggle ref {s.ref})")
            done.append(_wait_and_record(ledger.get(rec["id"]), wait, wait_cfg, echo))
            continue
        if not Path(rec["file"]).is_file():  # the others can still go
            echo(
                f"skipping pending ledger #{rec['id']}: {rec['file']} no longer exists "
                f"(write a new one with `kit predict`)"
            )
            continue
        if any(r["status"] in ("submitted", "complete") for r in ledger.by_sha256(rec["sha256"])):
            echo(f"ledger #{rec['id']}: the same file was submitted since; skipping it")
            ledger.update(rec["id"], status="error", error="duplicate of a later submission; not sent")
            continue
        validate(Path(rec["file"]))
        done.append(_upload(rec, rec["message"], wait, wait_cfg, echo))
    return done


def _upload(
    rec: dict, message: str, wait: bool, wait_cfg: WaitConfig | None, echo: Callable[[str], None]
) -> dict:
    """Check the limit, upload, record the ref, then (optionally) wait for the score."""
    path = Path(rec["file"])
    keep = (
        f"\nThe file is kept ({path}) and recorded as pending (ledger #{rec['id']}): "
        f"run `kit submit --retry` to send it."
    )
    try:
        remaining = competitions.remaining_submissions()
        if remaining is not None and remaining <= 0:
            raise client.KaggleLimitError(
                "today's submission limit is reached on Kaggle (it resets at 00:00 UTC)"
            )
        echo(
            f"uploading {path.name} ({'unknown' if remaining is None else remaining} "
            f"submissions left today): {message}"
        )
        ref = competitions.submit(path, message)
    except KitError as e:
        ledger.update(rec["id"], error=str(e))
        raise KitError(f"{e}{keep}") from None
    ledger.attach_ref(rec["id"], int(ref), message)
    echo(f"submitted: Kaggle ref {ref}, ledger #{rec['id']}")
    return _wait_and_record(ledger.get(rec["id"]), wait, wait_cfg, echo)


def _wait_and_record(rec: dict, wait: bool, wait_cfg: WaitConfig | None, echo: Callable[[str], None]) -> dict:
    """Poll Kaggle's submission list with backoff until `rec` is scored; record and print the score."""
    from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

    if not wait:
        echo(f"not waiting for the score: see {submissions_url()} or run `kit scores --sync` later")
        return rec
    cfg = wait_cfg or WaitConfig()

    def status() -> competitions.Submission | None:
        return next((s for s in competitions.list_submissions() if s.ref == rec["kaggle_ref"]), None)

    polls = Retrying(
        retry=retry_if_result(lambda s: s is None or s.status == "pending"),
        wait=wait_exponential(multiplier=cfg.first_s, exp_base=cfg.factor, min=cfg.first_s, max=cfg.max_s),
        stop=stop_after_delay(cfg.timeout_s),
        before_sleep=lambda _: None,
    )
    echo("waiting for the score ...")
    try:
        sub = polls(status)
    except RetryError:
        echo(
            f"not scored after {cfg.timeout_s:g} s; it is recorded as submitted (ledger #{rec['id']}, "
            f"Kaggle ref {rec['kaggle_ref']}). See {submissions_url()} or run `kit scores --sync` later."
        )
        return rec
    except KitError as e:
        echo(
            f"could not read the score ({e}); the upload itself worked (ledger #{rec['id']}, Kaggle "
            f"ref {rec['kaggle_ref']}). See {submissions_url()} or run `kit scores --sync` later."
        )
        return rec
    ledger.sync([sub])
    rec = ledger.get(rec["id"])
    if sub.status == "error":
        raise KitError(f"Kaggle could not score {Path(rec['file']).name} (ref {sub.ref}): {sub.error}")
    val = f" (validation {rec['val_accuracy']:.4f})" if rec["val_accuracy"] is not None else ""
    echo(f"public score: {sub.public_score:.5f}{val}  [ledger #{rec['id']}, Kaggle ref {sub.ref}]")
    return rec


# ----------------------------------------------------------------------------- leaderboard


def standing(top: int = 10) -> list[str]:
    """Lines for `kit leaderboard`: the top entries and where we stand among them."""
    entries = sorted(competitions.leaderboard(), key=lambda e: e.rank)
    me = client.username()
    ours = next((e for e in entries if e.team_name == me), None)
    scored = [r["public_score"] for r in ledger.records() if r["public_score"] is not None]
    lines = [f"{config.competition().slug} leaderboard ({len(entries)} teams)"]
    for e in entries[:top]:
        lines.append(f"{'>' if e is ours else ' '} {e.rank:5d}  {e.score:.5f}  {e.team_name}")
    if ours is not None:
        if ours.rank > top:
            lines.append("    ...")
            lines.append(f"> {ours.rank:5d}  {ours.score:.5f}  {ours.team_name}")
        lines.append(f"you ({me}) are ranked {ours.rank} of {len(entries)} with {ours.score:.5f}")
    elif scored:
        best = max(scored)
        rank = ledger.rank_among(best, [e.score for e in entries])
        lines.append(
            f"you ({me}) are not on the leaderboard; your best public score in the ledger, "
            f"{best:.5f}, would rank {rank} of {len(entries) + 1}"
        )
    else:
        lines.append(f"you ({me}) have no scored submission yet: `kit submit`")
    return lines
