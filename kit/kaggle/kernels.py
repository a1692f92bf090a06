"""Kaggle kernels for kit remote, through kit.kaggle.client: push a kernel and start it, read
its version, status, log and output files, and the account's weekly GPU quota.

A push refused at the concurrent-session limit is KaggleSessionLimitError, one refused for
the weekly GPU quota KaggleQuotaError; every other fault is one of the client module's KitErrors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError
from kit.kaggle import client

# how Kaggle words a refusal at the concurrent-session limit ("Maximum batch GPU session count
# of 2 reached."): the kernel is not refused for good, it waits until a session ends
SESSION_LIMIT_WORDS = ("session count", "maximum batch")
# how Kaggle words a refusal for the weekly GPU quota ("Accelerator Quota Exceeded: ..."): the
# kernel is fine, the account has no GPU time left until the quota refills
QUOTA_WORDS = ("quota exceeded",)


class KaggleSessionLimitError(KitError):
    """Kaggle refused a push: the account already runs as many sessions as it may at once."""


class KaggleQuotaError(KitError):
    """Kaggle refused a push: this week's GPU quota is used up."""


def _refused(e: Exception) -> KaggleSessionLimitError | None:
    """The session-limit refusal an exception or push error carries, if it is one."""
    text = client.scrub(str(e))
    return KaggleSessionLimitError(text) if any(w in text.lower() for w in SESSION_LIMIT_WORDS) else None


def push_kernel(folder: Path) -> tuple[str, int]:
    """Push the kernel in `folder` (kernel-metadata.json + its code_file) and start it.

    Returns (ref 'user/slug' from the metadata's id, the version number the push created). A
    push answered with an `error` or with any invalid*Sources is a failure (KitError): Kaggle
    would run the script without its data. The concurrent-session limit is
    KaggleSessionLimitError, the weekly GPU quota KaggleQuotaError.
    """
    api = client._client()
    # the ref is the metadata's id: Kaggle's own `ref` answer has varied ("/code/user/slug")
    ref = json.loads((Path(folder) / "kernel-metadata.json").read_text())["id"]
    name = ref.split("/")[-1]
    before, tries = _kernel_version(api, ref), []

    def once() -> tuple[str, int]:
        tries.append(1)
        # a retry after a lost answer: if Kaggle made the version, do not push (and run) it twice
        now = _kernel_version(api, ref) if len(tries) > 1 else None
        if now is not None and now > (before or 0):
            return ref, now
        try:
            with client._quiet():
                result = api.kernels_push(str(folder))
        except Exception as e:  # the limit can come as an HTTP error too
            limit = _refused(e)
            if limit is None:
                raise
            raise limit from None
        if result is None:
            raise KitError(f"Kaggle gave no answer to the push of {name}")
        if result.error:
            said = f"Kaggle refused the push of {name}: {client.scrub(result.error)}"
            if any(w in said.lower() for w in QUOTA_WORDS):
                raise KaggleQuotaError(said)
            raise _refused(Exception(result.error)) or KitError(said)
        invalid = {
            kind: list(getattr(result, f"invalid_{kind}_sources") or [])
            for kind in ("competition", "dataset", "kernel", "model")
        }
        bad = "; ".join(f"{kind} source(s) {', '.join(v)}" for kind, v in invalid.items() if v)
        if bad:
            raise KitError(f"Kaggle did not accept the push of {name}: invalid {bad}")
        return ref, int(result.version_number)

    return client._with_retries(once, f"pushing kernel {name}")


def _kernel_version(api, ref: str) -> int | None:
    """The latest version of kernel `ref` ('user/slug') on Kaggle, None when it has none yet or
    the question fails (the push that follows says what is wrong)."""
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    owner, slug = ref.split("/")
    request = ApiGetKernelRequest()
    request.user_name, request.kernel_slug = owner, slug
    try:
        with client._quiet(), api.build_kaggle_client() as kaggle:
            response = kaggle.kernels.kernels_api_client.get_kernel(request)
        return int(response.metadata.current_version_number) or None
    except Exception:
        return None


def kernel_version(ref: str) -> int | None:
    """The latest version of kernel `ref` ('user/slug') on Kaggle; None when Kaggle has no such
    kernel (it answers 403 "Permission 'kernels.get' was denied", or 404). Unlike the quiet
    check push_kernel makes, every other fault is an error (retried if transient): a caller
    deciding whether to push must not take "could not ask" for "not there"."""
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    api = client._client()
    owner, slug = ref.split("/")

    def once() -> int | None:
        request = ApiGetKernelRequest()
        request.user_name, request.kernel_slug = owner, slug
        try:
            with client._quiet(), api.build_kaggle_client() as kaggle:
                response = kaggle.kernels.kernels_api_client.get_kernel(request)
        except Exception as e:
            if client._status(e) in (403, 404):  # no such kernel (Kaggle never says which of the two)
                return None
            raise
        return int(response.metadata.current_version_number or 0) or None

    return client._with_retries(once, f"looking up kernel {ref}")


def kernel_status(ref: str, version: int | None = None) -> tuple[str, str]:
    """(status, failure message) of kernel `ref` ('user/slug') at `version` (None: the latest).

    status is a KernelWorkerStatus name: QUEUED, RUNNING, COMPLETE, ERROR, CANCEL_REQUESTED,
    CANCEL_ACKNOWLEDGED, NEW_SCRIPT. Right after a push the unversioned status can still be
    the previous session's, so callers pass the version the push returned.
    """
    api = client._client()
    label = f"{ref}/{version}" if version else ref

    def once():
        with client._quiet():
            return api.kernels_status(label)

    response = client._with_retries(once, f"reading the status of kernel {label}")
    status = getattr(response.status, "name", str(response.status))
    return status, client.scrub(response.failure_message or "")


def kernel_log(ref: str, version: int | None = None) -> str:
    """The session log of kernel `ref` at `version` as Kaggle stores it (often a JSON list of
    {stream_name, time, data} entries; see log_lines in kit.remote)."""
    api = client._client()
    label = f"{ref}/{version}" if version else ref

    def once():
        with client._quiet():
            return api.kernels_logs(label)

    return client._with_retries(once, f"reading the log of kernel {label}") or ""


def kernel_output(ref: str, dest: Path, version: int | None = None) -> list[Path]:
    """Download every output file of kernel `ref` at `version` into `dest` (all pages), and the
    log as <slug>.log. A file cut short by a dropped connection is resumed on the next try
    (HTTP Range); files already complete are not fetched again. Returns the paths written."""
    api = client._client()
    label = f"{ref}/{version}" if version else ref
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)

    def once():
        with client._quiet():
            files, _ = api.kernels_output(label, str(dest), force=False, quiet=True)
        return [Path(f) for f in files]

    return client._with_retries(once, f"downloading the output of kernel {label}")


@dataclass(frozen=True)
class Quota:
    """This week's GPU quota, in seconds: used, reserved (by running sessions), allowed."""

    used_s: float
    reserved_s: float
    total_s: float
    refresh: str  # ISO 8601 UTC, when the week's quota starts again

    @property
    def left_s(self) -> float:
        return max(0.0, self.total_s - self.used_s - self.reserved_s)


def gpu_quota() -> Quota | None:
    """The account's weekly GPU quota (as `kaggle quota` shows it); None if Kaggle does not say."""
    api = client._client()

    def once():
        with client._quiet():
            return api.quota_view()

    response = client._with_retries(once, "reading the GPU quota")
    q = response.gpu_quota
    if q is None or q.total_time_allowed is None:
        return None

    def seconds(t) -> float:
        return t.total_seconds() if t is not None else 0.0

    return Quota(
        seconds(q.time_used),
        seconds(q.time_reserved),
        seconds(q.total_time_allowed),
        client._iso(response.quota_refresh_time),
    )
