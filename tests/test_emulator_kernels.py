"""The emulator's kernels service (kit.emulator.kernels), through the real kaggle client.

Pushed scripts really run (tiny ones, a second or less); the status, log and output the
client gets are checked against what the script did. The last test parses every reply of
every RPC the emulator serves into its kagglesdk response type, so the emulator cannot
drift from the client.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from pathlib import Path

import pytest
import requests

from fixtures_kaggle import EMULATOR_KEY, EMULATOR_USER
from kit.emulator.competitions import CompetitionsService
from kit.emulator.kernels import KernelsService
from kit.emulator.server import Emulator
from kit.kaggle import client

SLUG = "digit-recognizer-fixture"
KERNEL = f"{EMULATOR_USER}/kit-kernel-test"
KRPC = "/api/v1/kernels.KernelsApiService/"
DONE = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")

WRITES_OUTPUT = """
import os, pathlib, time
inp = pathlib.Path(os.environ.get("KIT_KAGGLE_INPUT", "/kaggle/input"))
work = pathlib.Path(os.environ.get("KIT_KAGGLE_WORKING", "/kaggle/working"))
train = sorted(inp.rglob("train.csv"))[0]
print("epoch 1", flush=True)
time.sleep(0.4)
(work / "runs" / "seed-1").mkdir(parents=True)
(work / "runs" / "seed-1" / "metrics.json").write_text('{"accuracy": 0.5}')
(work / "out.txt").write_text(train.relative_to(inp).as_posix() + " " + train.read_text().splitlines()[0][:12])
print("cwd", pathlib.Path.cwd() == work)
"""


def _api():
    return client._client()


def _status(kernel: str):
    with client._quiet():
        return _api().kernels_status(kernel)


def _wait(kernel: str, timeout: float = 15.0) -> tuple[object, list[str]]:
    """Poll until an end state: (the last status response, the distinct statuses seen in order)."""
    seen: list[str] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        response = _status(kernel)
        if not seen or seen[-1] != response.status.name:
            seen.append(response.status.name)
        if response.status.name in DONE:
            return response, seen
        time.sleep(0.05)
    raise AssertionError(f"{kernel} still {seen[-1]} after {timeout} s")


def _log_text(log_file: Path, stream: str) -> str:
    """What the script printed on `stream` ("stdout" or "stderr"), from Kaggle's log (a JSON
    array of stream records). One stream at a time: the two are read by a thread each, so the
    order of lines between streams is the order they were read, not written."""
    return "".join(r["data"] for r in json.loads(log_file.read_text()) if r["stream_name"] == stream)


def _rpc(emu, name: str, body: dict) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.post(f"{emu.url}{KRPC}{name}", json=body, auth=(EMULATOR_USER, EMULATOR_KEY))


def _save_body(**over) -> dict:
    body = {
        "slug": KERNEL,
        "newTitle": "kit kernel test",
        "text": "print('hi')",
        "language": "python",
        "kernelType": "script",
        "competitionDataSources": [SLUG],
    }
    return body | over


# ============================================================================ a session's life


def test_push_runs_the_script_and_output_comes_back(kaggle_emulator, push_kernel, tmp_path):
    kaggle_emulator.queue_delay_s = 0.3
    pushed = push_kernel(WRITES_OUTPUT)
    assert (pushed.error, pushed.version_number, pushed.ref) == ("", 1, f"/code/{KERNEL}")  # "": none
    assert pushed.url == f"http://localhost/code/{KERNEL}" and pushed.invalid_competition_sources == []

    final, seen = _wait(f"{KERNEL}/1")
    assert seen == ["QUEUED", "RUNNING", "COMPLETE"] and not final.failure_message

    out = tmp_path / "out"
    with client._quiet():
        files, token = _api().kernels_output(f"{KERNEL}/1", str(out))
    assert token == ""
    assert sorted(Path(f).relative_to(out).as_posix() for f in files) == [
        "kit-kernel-test.log",
        "out.txt",
        "runs/seed-1/metrics.json",
    ]
    assert (out / "out.txt").read_text() == f"{SLUG}/train.csv label,pixel0"
    assert json.loads((out / "runs/seed-1/metrics.json").read_text()) == {"accuracy": 0.5}
    records = json.loads((out / "kit-kernel-test.log").read_text())
    assert [(r["stream_name"], r["data"]) for r in records] == [
        ("stdout", "epoch 1\n"),
        ("stdout", "cwd True\n"),
    ]
    assert 0 <= records[0]["time"] < records[1]["time"]


def test_each_push_is_a_new_version_with_its_own_status(kaggle_emulator, push_kernel):
    assert push_kernel("import sys; sys.exit(3)").version_number == 1
    _wait(f"{KERNEL}/1")
    second = push_kernel("print('fixed')")
    assert second.version_number == 2
    assert _wait(f"{KERNEL}/2")[0].status.name == "COMPLETE"
    assert _status(f"{KERNEL}/1").failure_message == "Process exited with code 3"
    assert _status(KERNEL).status.name == "COMPLETE"  # unversioned: the latest
    with pytest.raises(requests.HTTPError, match="Kernel version 'v3' not found"):
        _status(f"{KERNEL}/3")
    with pytest.raises(ValueError, match="Permission 'kernels.get' was denied"):
        _status(f"{EMULATOR_USER}/no-such-kernel")


def test_failing_script_is_error_with_its_log(kaggle_emulator, push_kernel, tmp_path):
    push_kernel("import sys\nprint('epoch 1', flush=True)\nraise RuntimeError('out of memory')\n")
    final, seen = _wait(f"{KERNEL}/1")
    assert seen[-1] == "ERROR" and final.failure_message == "Process exited with code 1"
    with client._quiet():
        files, _ = _api().kernels_output(f"{KERNEL}/1", str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["kit-kernel-test.log"]
    log = tmp_path / "out" / "kit-kernel-test.log"
    assert _log_text(log, "stdout") == "epoch 1\n"
    assert _log_text(log, "stderr").rstrip().endswith("RuntimeError: out of memory")


def test_timeout_is_error_and_kills_the_script(kaggle_emulator, push_kernel):
    kaggle_emulator.kernel_timeout_s = 0.5
    push_kernel("import time\nprint('start', flush=True)\ntime.sleep(60)\n")
    t0 = time.monotonic()
    final, _ = _wait(f"{KERNEL}/1")
    assert (final.status.name, final.failure_message) == ("ERROR", "Timed out after 0.5 s")
    assert time.monotonic() - t0 < 5
    assert kaggle_emulator.kernels.session(KERNEL).proc.poll() is not None


def test_kernels_push_timeout_is_the_session_limit(kaggle_emulator, push_kernel, tmp_path):
    push_kernel("import time; time.sleep(60)", folder=tmp_path / "k")
    with client._quiet():
        assert _api().kernels_push(str(tmp_path / "k"), timeout="1").version_number == 2
    assert _wait(f"{KERNEL}/2")[0].failure_message == "Timed out after 1 s"
    assert kaggle_emulator.kernels.session(KERNEL, 1).status == "RUNNING"  # 600 s by default


def test_pull_gets_the_pushed_source_and_metadata(kaggle_emulator, push_kernel, tmp_path):
    push_kernel("print('pulled')\n")
    with client._quiet():
        _api().kernels_pull(KERNEL, str(tmp_path / "pull"), metadata=True)
    assert (tmp_path / "pull" / "kit-kernel-test.py").read_text() == "print('pulled')\n"
    meta = json.loads((tmp_path / "pull" / "kernel-metadata.json").read_text())
    assert (meta["id"], meta["title"], meta["competition_sources"]) == (KERNEL, "kit kernel test", [SLUG])


# ============================================================================ pushes refused


@pytest.mark.parametrize(
    "over, error",
    [
        ({"newTitle": "abc"}, "Title must be between 5 and 50 characters"),
        ({"slug": f"{EMULATOR_USER}/Bad_Slug"}, "Invalid kernel slug 'Bad_Slug'"),
        ({"slug": "someone-else/kit-kernel-test"}, "You cannot push to a kernel owned by 'someone-else'"),
        ({"language": "julia"}, "Invalid language 'julia'"),
        ({"kernelType": "app"}, "Invalid kernel type 'app'"),
        ({"kernelType": "notebook"}, "The emulator runs only python script kernels"),
        ({"text": ""}, "The kernel's source (text) is empty"),
    ],
)
def test_bad_push_answers_error_and_saves_nothing(kaggle_emulator, over, error):
    reply = _rpc(kaggle_emulator, "SaveKernel", _save_body(**over))
    assert reply.status_code == 200 and reply.json()["error"].startswith(error)
    assert "versionNumber" not in reply.json() and kaggle_emulator.kernels.kernels == {}


def test_short_title_is_refused_by_the_client_before_sending(kaggle_emulator, push_kernel):
    with pytest.raises(ValueError, match="Title must be at least five characters"):
        push_kernel("print(1)", title="abc")
    assert not any(p.endswith("SaveKernel") for _, p in kaggle_emulator.requests)


def test_unknown_competition_source_is_reported_and_the_kernel_runs_without_it(kaggle_emulator, push_kernel):
    code = "import os; print(sorted(os.listdir(os.environ['KIT_KAGGLE_INPUT'])))"
    pushed = push_kernel(code, competition_sources=["titanic", SLUG])
    assert pushed.invalid_competition_sources == ["titanic"] and pushed.version_number == 1
    pushed = push_kernel(code, competition_sources=["titanic"])
    assert pushed.invalid_competition_sources == ["titanic"]
    _wait(f"{KERNEL}/2")
    logs = [kaggle_emulator.kernels.session(KERNEL, v).log[0]["data"] for v in (1, 2)]
    assert logs == [f"['{SLUG}']\n", "[]\n"]


def test_title_decides_a_new_kernels_slug(kaggle_emulator, push_kernel):
    pushed = push_kernel("print(1)", title="Another Title Here")
    assert pushed.ref == f"/code/{EMULATOR_USER}/another-title-here"
    assert f"{EMULATOR_USER}/another-title-here" in kaggle_emulator.kernels.kernels


def test_gpu_session_limit(kaggle_emulator, push_kernel):
    kaggle_emulator.queue_delay_s = 60  # they stay QUEUED: no process is started
    for i in range(2):
        assert push_kernel("print(1)", id=f"{EMULATOR_USER}/gpu-kernel-{i}", title=f"gpu kernel {i}",
                           machine_shape="NvidiaTeslaT4").error == ""  # fmt: skip
    third = push_kernel("print(1)", id=f"{EMULATOR_USER}/gpu-kernel-2", title="gpu kernel 2", enable_gpu=True)
    assert third.error == "Maximum batch GPU session count of 2 reached." and not third.version_number
    assert push_kernel("print(1)").error == ""  # a CPU kernel is not limited
    with client._quiet():
        quota = _api().quota_view()
    # what the queued sessions' time limits would take is reserved
    assert quota.gpu_quota.time_reserved.total_seconds() == 2 * kaggle_emulator.kernel_timeout_s
    assert quota.gpu_quota.time_used.total_seconds() == 0


def test_quota_is_visible_and_a_used_up_quota_refuses_gpu_pushes(kaggle_emulator, push_kernel):
    with client._quiet():
        quota = _api().quota_view()
    assert quota.gpu_quota.total_time_allowed.total_seconds() == 30 * 3600
    assert quota.gpu_quota.time_used.total_seconds() == 0 and quota.quota_refresh_time is not None
    kaggle_emulator.gpu_hours_used = 30.0
    with client._quiet():
        quota = _api().quota_view()
    assert quota.gpu_quota.time_used == quota.gpu_quota.total_time_allowed
    refused = push_kernel("print(1)", machine_shape="NvidiaTeslaT4")
    assert refused.error.startswith("Accelerator Quota Exceeded")
    assert push_kernel("print(1)").error == ""


def test_gpu_sessions_use_quota(kaggle_emulator, push_kernel):
    push_kernel("import time; time.sleep(0.3)", enable_gpu=True)
    _wait(f"{KERNEL}/1")
    assert 0.3 / 3600 <= kaggle_emulator.gpu_hours_used < 5 / 3600


# ============================================================================ faults


def test_fault_push_rejected(kaggle_emulator, push_kernel):
    kaggle_emulator.fail("SaveKernel", "reject", message="Notebook failed to save")
    assert push_kernel("print(1)").error == "Notebook failed to save"
    assert push_kernel("print(1)").version_number == 1


def test_fault_session_limit_and_quota(kaggle_emulator, push_kernel):
    kaggle_emulator.fail("SaveKernel", "session_limit")
    assert push_kernel("print(1)", enable_gpu=True).error == "Maximum batch GPU session count of 2 reached."
    kaggle_emulator.fail("SaveKernel", "quota")
    assert push_kernel("print(1)", enable_gpu=True).error.startswith("Accelerator Quota Exceeded")
    kaggle_emulator.fail("GetAcceleratorQuotaStatistics", "quota")
    with client._quiet():
        quota = _api().quota_view()
    assert quota.gpu_quota.time_used == quota.gpu_quota.total_time_allowed
    assert push_kernel("print(1)", enable_gpu=True).version_number == 1


def test_fault_script_error(kaggle_emulator, push_kernel):
    kaggle_emulator.fail("SaveKernel", "script_error", message="CUDA error: out of memory", exit_code=2)
    push_kernel(WRITES_OUTPUT)
    final, _ = _wait(f"{KERNEL}/1")
    assert (final.status.name, final.failure_message) == ("ERROR", "Process exited with code 2")
    session = kaggle_emulator.kernels.session(KERNEL)
    assert [r["data"] for r in session.log] == ["CUDA error: out of memory\n"] and session.files == []


@pytest.mark.parametrize("kind", ["429", "500"])
def test_fault_status_call_fails_once(kaggle_emulator, push_kernel, kind):
    push_kernel("print(1)")
    kaggle_emulator.fail("GetKernelSessionStatus", kind, retry_after=1)
    with pytest.raises(requests.HTTPError) as err:
        _status(f"{KERNEL}/1")
    assert err.value.response.status_code == int(kind)
    assert _wait(f"{KERNEL}/1")[0].status.name == "COMPLETE"


def test_fault_output_file_dropped_mid_download_resumes(kaggle_emulator, push_kernel, tmp_path):
    size = 3 * 2**20
    push_kernel(
        "import os, pathlib\n"
        "work = pathlib.Path(os.environ['KIT_KAGGLE_WORKING'])\n"
        f"(work / 'big.bin').write_bytes(__import__('random').Random(0).randbytes({size}))\n"
    )
    _wait(f"{KERNEL}/1")
    kaggle_emulator.fail("/kernels-output/", "drop", after_bytes=int(1.5 * 2**20))
    api, out = _api(), tmp_path / "out"
    client._with_retries(
        lambda: api.kernels_output(f"{KERNEL}/1", str(out), quiet=True), "downloading the output"
    )
    expected = (kaggle_emulator.kernels.session(KERNEL).working / "big.bin").read_bytes()
    assert len(expected) == size and (out / "big.bin").read_bytes() == expected
    gets = [e["range"] for e in kaggle_emulator.log if e["path"].startswith("/kernels-output/")]
    # the client kept the first whole MiB of the dropped body and asked for the rest
    assert gets[0] is None and gets[-1] == f"bytes={2**20}-"


def test_output_urls_need_no_auth_and_honour_range(kaggle_emulator, push_kernel):
    push_kernel(
        "import os; open(os.path.join(os.environ['KIT_KAGGLE_WORKING'], 'a.txt'), 'w').write('0123456789')"
    )
    _wait(f"{KERNEL}/1")
    listing = _rpc(
        kaggle_emulator,
        "ListKernelSessionOutput",
        {"userName": EMULATOR_USER, "kernelSlug": "kit-kernel-test"},
    )
    url = listing.json()["files"][0]["url"].replace("http://localhost", kaggle_emulator.url)
    session = requests.Session()
    session.trust_env = False
    full = session.get(url)
    assert (
        full.status_code == 200 and full.content == b"0123456789" and full.headers["Accept-Ranges"] == "bytes"
    )
    part = session.get(url, headers={"Range": "bytes=4-", "If-Range": full.headers["ETag"]})
    assert part.status_code == 206 and part.content == b"456789"
    assert session.get(url, headers={"Range": "bytes=10-"}).status_code == 416
    assert session.get(url.replace("a.txt", "b.txt")).status_code == 404


def test_paged_output_listing(kaggle_emulator, push_kernel, tmp_path):
    push_kernel(
        "import os\nfor i in range(25): open(os.path.join(os.environ['KIT_KAGGLE_WORKING'], f'f{i:02d}'), 'w').write(str(i))"
    )
    _wait(f"{KERNEL}/1")
    with client._quiet():
        files, _ = _api().kernels_output(f"{KERNEL}/1", str(tmp_path / "out"))
    assert len(files) == 25  # 20 + 5 files, no log: the script printed nothing
    assert sum(1 for _, p in kaggle_emulator.requests if p.endswith("ListKernelSessionOutput")) == 2


def test_stop_kills_running_sessions(fixture_competition, tmp_path):
    emu = Emulator(fixture_competition / f"{SLUG}.zip", fixture_competition / "answers.csv").start()
    reply = requests.post(
        f"{emu.url}{KRPC}SaveKernel",
        json=_save_body(slug="demo/sleeper", newTitle="sleeper", text="import time; time.sleep(60)"),
        auth=("demo", "demo-key"),
        proxies={"http": None},
    )
    assert reply.json()["versionNumber"] == 1
    session = emu.kernels.session("demo/sleeper")
    while session.proc is None:
        time.sleep(0.01)
    root = emu.kernels.root
    t0 = time.monotonic()
    emu.stop()
    assert time.monotonic() - t0 < 5 and session.proc.poll() is not None and not root.exists()


# ============================================================================ no drift from the client


def _sdk_response_types() -> dict[str, type]:
    """{rpc name: the kagglesdk response class} from every kagglesdk service's `call(...)` lines."""
    import kagglesdk

    types = {}
    for path in Path(kagglesdk.__file__).parent.glob("*/services/*.py"):
        module = importlib.import_module(
            "kagglesdk."
            + path.relative_to(Path(kagglesdk.__file__).parent).with_suffix("").as_posix().replace("/", ".")
        )
        for rpc, cls in re.findall(r'\.call\("[\w.]+", "(\w+)", request, (\w+)\)', path.read_text()):
            if cls != "None":  # RPCs that answer nothing
                types[rpc] = getattr(module, cls)
    return types


def _unknown_fields(cls, data: dict, where: str) -> list[str]:
    """Every key of `data` (recursively) that `cls` does not declare, or whose value has the wrong JSON type."""
    from kagglesdk.kaggle_object import KaggleObject, PredefinedSerializer

    fields = {f.json_name: f for f in cls._fields}
    wrong = []
    for key, value in data.items():
        f = fields.get(key)
        if f is None:
            wrong.append(f"{where}.{key}: unknown to {cls.__name__}")
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(f.field_type, type) and issubclass(f.field_type, KaggleObject):
                wrong += _unknown_fields(f.field_type, item, f"{where}.{key}")
            elif isinstance(f.serializer, PredefinedSerializer) and not isinstance(item, f.field_type):
                wrong.append(f"{where}.{key}: {item!r} is not {f.field_type.__name__}")
    return wrong


def test_the_drift_check_sees_unknown_and_mistyped_fields():
    from kagglesdk.kernels.types.kernels_api_service import (
        ApiGetAcceleratorQuotaStatisticsResponse,
        ApiListKernelSessionOutputResponse,
    )

    listing = {"files": [{"url": "u", "fileName": "f", "size": 3}], "log": 5}
    assert _unknown_fields(ApiListKernelSessionOutputResponse, listing, "L") == [
        "L.files.size: unknown to ApiKernelSessionOutputFile",
        "L.log: 5 is not str",
    ]
    quota = {"gpuQuota": {"timeUsed": "1s", "hoursUsed": 1}}
    assert _unknown_fields(ApiGetAcceleratorQuotaStatisticsResponse, quota, "Q") == [
        "Q.gpuQuota.hoursUsed: unknown to ApiAcceleratorQuota"
    ]


def _served_rpcs() -> set[str]:
    return {
        n[len("_rpc_") :]
        for cls in (Emulator, CompetitionsService, KernelsService)
        for n in dir(cls)
        if n.startswith("_rpc_")
    }


def _every_reply(emu, tmp_path) -> dict[str, list[requests.Response]]:
    """Each served RPC called (the kernels ones in several states); {rpc: [HTTP responses]}."""
    session = requests.Session()
    session.trust_env = False
    auth = (EMULATOR_USER, EMULATOR_KEY)
    replies: dict[str, list] = {}
    emu.queue_delay_s = 0.2  # so that the first status asked is QUEUED

    def call(service, rpc, body):
        r = session.post(f"{emu.url}/api/v1/{service}/{rpc}", json=body, auth=auth, allow_redirects=False)
        replies.setdefault(rpc, []).append(r)
        return r

    comp, kern, c = (
        "competitions.CompetitionApiService",
        "kernels.KernelsApiService",
        {"competitionName": SLUG},
    )
    call("security.OAuthService", "IntrospectToken", {"token": EMULATOR_KEY})
    for rpc in ("ListDataFiles", "DownloadDataFiles", "GetSubmissionLimits", "GetLeaderboard"):
        call(comp, rpc, c)
    call(comp, "DownloadDataFile", c | {"fileName": "train.csv"})
    upload = call(comp, "StartSubmissionUpload", c | {"fileName": "s.csv", "contentLength": 14}).json()
    session.put(upload["createUrl"].replace("http://localhost", emu.url), data=b"ImageId,Label\n")
    ref = call(
        comp, "CreateSubmission", c | {"blobFileTokens": upload["token"], "submissionDescription": "d"}
    ).json()["ref"]
    call(comp, "ListSubmissions", c)
    time.sleep(emu.scoring_delay_s)
    call(comp, "GetSubmission", {"ref": ref})  # scored by now: an ERROR with errorDescription
    call(comp, "ListSubmissions", c)

    call(
        kern,
        "SaveKernel",
        _save_body(text="import sys; print('x'); sys.exit(1)", competitionDataSources=["x"]),
    )
    call(kern, "SaveKernel", _save_body(newTitle="no"))  # the error reply
    call(
        kern,
        "SaveKernel",
        _save_body(text="import os; open('o.txt', 'w').write('o')", machineShape="NvidiaTeslaT4"),
    )
    which = {"userName": EMULATOR_USER, "kernelSlug": "kit-kernel-test"}
    call(kern, "GetKernelSessionStatus", which)  # QUEUED or RUNNING
    _wait(f"{KERNEL}/2")
    for label in ("v1", "v2"):
        for rpc in ("GetKernelSessionStatus", "ListKernelSessionOutput", "GetKernel"):
            call(kern, rpc, which | {"versionLabel": label, "pageSize": 20, "pageToken": ""})
    call(kern, "GetAcceleratorQuotaStatistics", {})
    return replies


def test_every_reply_parses_into_its_kagglesdk_response_type(kaggle_emulator, tmp_path):
    types, replies = _sdk_response_types(), _every_reply(kaggle_emulator, tmp_path)
    assert set(replies) == _served_rpcs()  # a new RPC in the emulator needs a case here
    problems = []
    for rpc, responses in replies.items():
        for r in responses:
            if types[rpc].__name__ == "HttpRedirect":
                assert r.status_code == 302 and r.headers["Location"].startswith("http://localhost/data/")
                continue
            assert r.status_code == 200, (rpc, r.text)
            payload = r.json()
            problems += _unknown_fields(types[rpc], payload, rpc)
            types[rpc].from_dict(payload)  # and the client's own parser takes it
    assert problems == []
    statuses = [r.json()["status"] for r in replies["GetKernelSessionStatus"]]
    assert statuses == ["QUEUED", "ERROR", "COMPLETE"]
    assert (
        "error" in replies["SaveKernel"][1].json()
        and "failureMessage" in replies["GetKernelSessionStatus"][1].json()
    )
