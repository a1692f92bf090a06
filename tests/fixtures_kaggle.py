"""Fixtures for the local Kaggle emulator and the real kaggle client (owned by kit.emulator / kit.kaggle).

kaggle_emulator   an Emulator serving the fixture competition, started, with its
                  environment monkeypatched in (KAGGLE_API_ENVIRONMENT=LOCALHOST, the
                  proxy variables, demo credentials), HOME and KAGGLE_CONFIG_DIR in
                  tmp_path (the user's real ~/.kaggle is never read), every KIT_*_DIR
                  isolated and retry backoff shortened (KIT_RETRY_BASE_S=0.01).
                  Yields the Emulator; stopped afterwards.
push_kernel       push_kernel(code, folder=None, **metadata) -> ApiSaveKernelResponse: writes
                  kernel-metadata.json (defaults: id demo/kit-kernel-test, a python script
                  kernel, the fixture competition attached, no GPU) and script.py, and
                  pushes them with the real client (KaggleApi.kernels_push). Needs
                  kaggle_emulator.
"""

from __future__ import annotations

import json
import os

import pytest

from kit.emulator.server import Emulator
from kit.kaggle import client

EMULATOR_USER = "demo"
EMULATOR_KEY = "demo-key-0123456789abcdef"


@pytest.fixture
def kaggle_emulator(isolated_dirs, fixture_competition, monkeypatch, tmp_path):
    home, config_dir = tmp_path / "home", tmp_path / "kaggle-config"
    home.mkdir()
    config_dir.mkdir()
    for var in list(os.environ):  # nothing of the caller's Kaggle set-up leaks in
        if var.startswith("KAGGLE_") or var.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KIT_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("KIT_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("KIT_NET_TIMEOUT_S", "3")  # a stalled request fails fast in tests
    emulator = Emulator(
        fixture_competition / "digit-recognizer-fixture.zip",
        fixture_competition / "answers.csv",
        username=EMULATOR_USER,
        key=EMULATOR_KEY,
        scoring_delay_s=0.3,
        teams=[("alice", 0.99), ("bob", 0.5)],
    )
    with emulator:
        for name, value in emulator.env(config_dir).items():
            monkeypatch.setenv(name, value)
        yield emulator


@pytest.fixture
def push_kernel(kaggle_emulator, tmp_path):
    count = iter(range(1_000_000))

    def push(code: str, folder=None, **metadata):
        folder = folder or tmp_path / f"kernel-{next(count)}"
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "id": f"{EMULATOR_USER}/kit-kernel-test",
            "title": "kit kernel test",
            "code_file": "script.py",
            "language": "python",
            "kernel_type": "script",
            "is_private": True,
            "enable_gpu": False,
            "enable_internet": False,
            "competition_sources": [kaggle_emulator.slug],
        } | metadata
        (folder / "kernel-metadata.json").write_text(json.dumps(meta))
        (folder / meta["code_file"]).write_text(code)
        api = client._client()
        with client._quiet():
            return api.kernels_push(str(folder))

    return push
