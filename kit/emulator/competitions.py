"""The emulator's competition service: Kaggle's `competitions.CompetitionApiService` for one competition.

kit.emulator.server wires it in (`Emulator.competitions`) and routes the RPCs to it; the
competition's data and upload URLs are served by the server's handler from what this
service holds (the zip, its members, the uploaded files).

    /api/v1/competitions.CompetitionApiService/
        ListDataFiles          {competitionName} -> {files: [{ref, name, totalBytes, creationDate}]}
        DownloadDataFiles      {competitionName} -> 302 to /data/<slug>.zip
        DownloadDataFile       {competitionName, fileName} -> 302 to /data/<slug>/<fileName>
        GetSubmissionLimits    {competitionName} -> {numToday, numTotal, numAllowedNow, limitedByTotal}
        StartSubmissionUpload  {competitionName, fileName, contentLength, ...} -> {token, createUrl}
        CreateSubmission       {competitionName, blobFileTokens, submissionDescription}
                               -> {message, ref}; at the daily limit: 400 "Submission not allowed:
                               Your team has used its daily Submission allowance (N) today, ..."
        ListSubmissions        {competitionName, page, pageSize} -> {submissions: [ApiSubmission]}
                               newest first
        GetSubmission          {ref} -> ApiSubmission
        GetLeaderboard         {competitionName, pageSize, pageToken} -> {submissions: [{teamId,
                               teamName, submissionDate, score}], nextPageToken}

A submission is PENDING for `scoring_delay_s`, then COMPLETE with publicScore = accuracy
against the answer key over all test rows (as a string, 5 decimals, like Kaggle's), or
ERROR with an errorDescription for a malformed CSV. Errored submissions count towards
the daily limit, as on Kaggle; the day is the UTC day.

`competition_files` picks what `kit emulator` serves: a given zip and answer key, or the
fixture competition (kit.fixture).
"""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
import time
import zipfile
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path

from kit import fixture
from kit.emulator.wire import HOST, kaggle_now, kaggle_time
from kit.errors import KitError
from kit.io import utc_now

FIRST_REF = 50_000_001  # submission refs look like Kaggle's 8-digit ones
DEFAULT_PAGE_SIZE = 20


class CompetitionsService:
    """The served competition's files, answer key, uploads and submissions for one Emulator
    (which holds the options: slug, username, daily_limit, scoring_delay_s, teams).

    competition_zip: the zip the data download delivers (train.csv, test.csv, sample_submission.csv)
    answers_csv:     ImageId,Label, the hidden test labels that submissions are scored against
    """

    def __init__(self, emu, competition_zip: Path, answers_csv: Path):
        self.emu = emu
        self.zip_path = Path(competition_zip)
        self.zip_bytes = self.zip_path.read_bytes()
        self.etag = '"' + hashlib.sha1(self.zip_bytes).hexdigest() + '"'
        self.last_modified = formatdate(self.zip_path.stat().st_mtime, usegmt=True)
        self.answers = _read_answers(Path(answers_csv))
        self.submissions: list[dict] = []
        self._uploads: dict[str, dict] = {}

    def rpc_method(self, name: str):
        """The RPC `name` as a method body -> (status, payload), or None if not the competition's."""
        return getattr(self, f"_rpc_{name}", None)

    # ------------------------------------------------------------------ submissions

    def _today_count(self) -> int:
        today = kaggle_now().date()
        return sum(1 for s in self.submissions if s["date"].date() == today)

    def _refresh(self, sub: dict) -> dict:
        """Score a PENDING submission once its scoring delay has passed."""
        if sub["status"] == "PENDING" and (time.monotonic() - sub["_t0"]) >= self.emu.scoring_delay_s:
            score, error = _score(sub["_content"], self.answers)
            if error is None:
                sub.update(status="COMPLETE", public_score=score)
            else:
                sub.update(status="ERROR", error=error)
        return sub

    def _api_submission(self, sub: dict) -> dict:
        self._refresh(sub)
        out = {
            "ref": sub["ref"],
            "totalBytes": sub["total_bytes"],
            "date": kaggle_time(sub["date"]),
            "description": sub["description"],
            "fileName": sub["file_name"],
            "status": sub["status"],
            "submittedBy": self.emu.username,
            "teamName": self.emu.username,
            "url": f"/submissions/{sub['ref']}/{sub['file_name']}",
        }
        if sub["public_score"] is not None:
            out["publicScore"] = f"{sub['public_score']:.5f}"
        if sub["error"]:
            out["errorDescription"] = sub["error"]
        return out

    def best_score(self) -> tuple[float, datetime] | None:
        with self.emu._lock:
            done = [self._refresh(s) for s in self.submissions]
        scored = [(s["public_score"], s["date"]) for s in done if s["status"] == "COMPLETE"]
        return max(scored, key=lambda t: t[0]) if scored else None

    # ------------------------------------------------------------------ RPCs: body dict -> (status, payload)

    def _rpc_ListDataFiles(self, body):
        with zipfile.ZipFile(io.BytesIO(self.zip_bytes)) as zf:
            files = [
                {
                    "ref": i.filename,
                    "name": i.filename,
                    "totalBytes": i.file_size,
                    "creationDate": kaggle_time(datetime(*i.date_time)),
                }
                for i in zf.infolist()
            ]
        return 200, {"files": files, "nextPageToken": ""}

    def _rpc_DownloadDataFiles(self, body):
        return 302, f"{HOST}/data/{self.emu.slug}.zip"

    def _rpc_DownloadDataFile(self, body):
        return 302, f"{HOST}/data/{self.emu.slug}/{body.get('fileName', '')}"

    def _rpc_GetSubmissionLimits(self, body):
        with self.emu._lock:
            today, total = self._today_count(), len(self.submissions)
        return 200, {
            "numToday": today,
            "numTotal": total,
            "numAllowedNow": max(0, self.emu.daily_limit - today),
            "limitedByTotal": False,
        }

    def _rpc_StartSubmissionUpload(self, body):
        token = secrets.token_hex(12)
        with self.emu._lock:
            self._uploads[token] = {
                "file_name": body.get("fileName", ""),
                "content_length": int(body.get("contentLength", 0)),
                "content": None,
            }
        return 200, {"token": token, "createUrl": f"{HOST}/upload/{token}"}

    def _rpc_CreateSubmission(self, body):
        with self.emu._lock:
            if self._today_count() >= self.emu.daily_limit:
                now = utc_now()
                hours = (
                    datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now
                ).total_seconds() / 3600
                return 400, {
                    "code": 400,
                    "message": (
                        f"Submission not allowed: Your team has used its daily Submission allowance "
                        f"({self.emu.daily_limit}) today, please try again tomorrow UTC ({hours:.1f} hours from now)."
                    ),
                }
            upload = self._uploads.get(body.get("blobFileTokens", ""))
            if upload is None or upload["content"] is None:
                return 400, {
                    "code": 400,
                    "message": "The submission file was not uploaded (unknown blobFileTokens)",
                }
            sub = {
                "ref": FIRST_REF + len(self.submissions),
                "date": kaggle_now(),
                "_t0": time.monotonic(),
                "file_name": upload["file_name"],
                "description": body.get("submissionDescription") or "",
                "total_bytes": len(upload["content"]),
                "sha256": hashlib.sha256(upload["content"]).hexdigest(),
                "status": "PENDING",
                "public_score": None,
                "error": None,
                "_content": upload["content"],
            }
            self.submissions.append(sub)
        return 200, {
            "message": "Successfully submitted to " + self.emu.slug.replace("-", " ").title(),
            "ref": sub["ref"],
        }

    def _rpc_ListSubmissions(self, body):
        page = max(1, int(body.get("page") or 1))
        size = int(body.get("pageSize") or DEFAULT_PAGE_SIZE)
        with self.emu._lock:
            subs = sorted(self.submissions, key=lambda s: s["ref"], reverse=True)
            rows = [self._api_submission(s) for s in subs[(page - 1) * size : page * size]]
        return 200, {"submissions": rows, "nextPageToken": ""}

    def _rpc_GetSubmission(self, body):
        with self.emu._lock:
            for s in self.submissions:
                if s["ref"] == int(body.get("ref", 0)):
                    return 200, self._api_submission(s)
        return 404, {"code": 404, "message": f"Submission {body.get('ref')} not found"}

    def _rpc_GetLeaderboard(self, body):
        entries = [(name, score, kaggle_now() - timedelta(days=30)) for name, score in self.emu.teams]
        best = self.best_score()
        if best is not None:
            entries.append((self.emu.username, best[0], best[1]))
        entries.sort(key=lambda e: -e[1])
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or DEFAULT_PAGE_SIZE)
        page = entries[start : start + size]
        rows = [
            {
                "teamId": 1000 + start + i,
                "teamName": name,
                "submissionDate": kaggle_time(date),
                "score": f"{score:.5f}",
            }
            for i, (name, score, date) in enumerate(page)
        ]
        more = start + size < len(entries)
        return 200, {"submissions": rows, "nextPageToken": str(start + size) if more else ""}

    # ------------------------------------------------------------------ files

    def data_member(self, name: str) -> bytes | None:
        with zipfile.ZipFile(io.BytesIO(self.zip_bytes)) as zf:
            return zf.read(name) if name in zf.namelist() else None

    def store_upload(self, token: str, content: bytes) -> bool:
        with self.emu._lock:
            upload = self._uploads.get(token)
            if upload is None:
                return False
            upload["content"] = content
            return True


# ============================================================================ what to serve


def competition_files(
    zip_path: Path | None, answers: Path | None, slug: str | None = None
) -> tuple[Path, Path, str]:
    """(competition zip, answer key, slug) to serve: the given pair (slug: the zip's stem unless
    given), or with neither the fixture competition, built if needed (kit.fixture)."""
    if (zip_path is None) != (answers is None):
        raise KitError(
            "--zip and --answers go together: the competition zip and its answer key (ImageId,Label)"
        )
    if zip_path is None:
        folder = fixture.build()
        return folder / fixture.ZIP_NAME, folder / fixture.ANSWERS, slug or fixture.NAME
    return Path(zip_path), Path(answers), slug or Path(zip_path).stem


# ============================================================================ scoring


def _read_answers(path: Path) -> dict[int, int]:
    """answers.csv (ImageId,Label) -> {image_id: label}."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        assert [h.strip() for h in header] == ["ImageId", "Label"], f"{path}: header {header}"
        return {int(row[0]): int(row[1]) for row in reader if row}


def _score(content: bytes, answers: dict[int, int]) -> tuple[float | None, str | None]:
    """Kaggle's categorization accuracy. Returns (score, None) or (None, error description)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "Submission file is not UTF-8 text"
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows or [c.strip() for c in rows[0]] != ["ImageId", "Label"]:
        return None, "Submission must have the header ImageId,Label"
    rows = rows[1:]
    if len(rows) != len(answers):
        return None, f"Submission must have {len(answers)} rows, found {len(rows)}"
    seen: dict[int, int] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) != 2:
            return None, f"Line {line}: expected 2 columns, found {len(row)}"
        try:
            image_id, label = int(row[0]), int(row[1])
        except ValueError:
            return None, f"Line {line}: ImageId and Label must be integers, found {row[0]!r},{row[1]!r}"
        if image_id not in answers:
            return None, f"Line {line}: unexpected ImageId {image_id}"
        if image_id in seen:
            return None, f"Line {line}: duplicate ImageId {image_id}"
        seen[image_id] = label
    correct = sum(seen[i] == y for i, y in answers.items())
    return correct / len(answers), None
