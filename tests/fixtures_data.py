"""Fixtures for data, fixture competition and run folders (owned by kit.data / kit.fixture).

fixture_competition  Path: the built fixture folder (digit-recognizer-fixture.zip,
                     answers.csv), built once per session
isolated_dirs        every KIT_*_DIR moved under tmp_path (data, runs, submissions,
                     reports); KIT_CACHE_DIR shared by the session; fixture competition
fixture_data         isolated_dirs with the fixture installed, so data.load() works
fixture_data_at      the same as a context manager, for module-scoped fixtures (runs trained
                     once and read by several tests)
"""

from __future__ import annotations

import contextlib
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


def point_kit_at(mp: pytest.MonkeyPatch, root: Path, cache: Path) -> None:
    """Every kit folder under `root` (data/, runs/, submissions/, reports/), the cache at
    `cache`, the fixture competition: for `mp`'s lifetime."""
    for env, sub in [
        ("KIT_DATA_DIR", "data"),
        ("KIT_RUNS_DIR", "runs"),
        ("KIT_SUBMISSIONS_DIR", "submissions"),
        ("KIT_REPORTS_DIR", "reports"),
    ]:
        mp.setenv(env, str(root / sub))
    mp.setenv("KIT_CACHE_DIR", str(cache))
    mp.setenv("KIT_COMPETITION", FIXTURE_COMPETITION)


def copy_installed(installed: Path, dest: Path) -> Path:
    """The installed fixture data copied to `dest`; copy2 keeps mtimes, so the manifest's fast
    check holds."""
    shutil.copytree(installed, dest, copy_function=shutil.copy2)
    return dest


@contextlib.contextmanager
def fixture_data_at(root: Path, installed: Path, cache: Path):
    """What isolated_dirs + fixture_data make per test, under `root` for the block: the
    installed fixture copied to root/data and every kit folder pointed at root."""
    copy_installed(installed, root / "data")
    with pytest.MonkeyPatch.context() as mp:
        point_kit_at(mp, root, cache)
        yield root


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch, kit_session_cache) -> Path:
    """Point every kit folder at tmp_path subfolders; returns tmp_path."""
    point_kit_at(monkeypatch, tmp_path, kit_session_cache)
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
    """isolated_dirs plus the fixture competition installed into the data folder; returns it."""
    return copy_installed(installed_fixture_dir, isolated_dirs / "data")
