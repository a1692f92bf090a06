"""Fixtures for data, fixture competition and run folders (owned by kit.data / kit.fixture).

fixture_competition  Path: the built fixture folder (digit-recognizer-fixture.zip,
                     answers.csv), built once per session
isolated_dirs        every KIT_*_DIR moved under tmp_path (data, runs, submissions,
                     reports); KIT_CACHE_DIR shared by the session; fixture competition
fixture_data         isolated_dirs with the fixture installed, so data.load() works
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURE_COMPETITION = "digit-recognizer-fixture"


@pytest.fixture(scope="session")
def kit_session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kit-cache")


@pytest.fixture(scope="session")
def fixture_competition(kit_session_cache) -> Path:
    """The fixture competition folder, built once for the whole session."""
    from kit import fixture

    return fixture.build(kit_session_cache / "fixture")


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch, kit_session_cache) -> Path:
    """Point every kit folder at tmp_path subfolders; returns tmp_path."""
    for env, sub in [
        ("KIT_DATA_DIR", "data"),
        ("KIT_RUNS_DIR", "runs"),
        ("KIT_SUBMISSIONS_DIR", "submissions"),
        ("KIT_REPORTS_DIR", "reports"),
    ]:
        monkeypatch.setenv(env, str(tmp_path / sub))
    monkeypatch.setenv("KIT_CACHE_DIR", str(kit_session_cache))
    monkeypatch.setenv("KIT_COMPETITION", FIXTURE_COMPETITION)
    return tmp_path


@pytest.fixture(scope="session")
def installed_fixture_dir(tmp_path_factory, fixture_competition) -> Path:
    """A data folder with the fixture installed (and its cache), made once and copied per test."""
    from kit import data

    folder = tmp_path_factory.mktemp("kit-data-installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KIT_DATA_DIR", str(folder))
        mp.setenv("KIT_COMPETITION", FIXTURE_COMPETITION)
        data.install(fixture_competition / f"{FIXTURE_COMPETITION}.zip", echo=lambda s: None)
    return folder


@pytest.fixture
def fixture_data(isolated_dirs, installed_fixture_dir) -> Path:
    """isolated_dirs plus the fixture competition installed into the data folder.

    Returns the data folder. copy2 keeps mtimes, so the manifest's fast check holds.
    """
    dest = isolated_dirs / "data"
    shutil.copytree(installed_fixture_dir, dest, copy_function=shutil.copy2)
    return dest
