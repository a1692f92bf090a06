"""Shared pytest fixtures. Each concern keeps its fixtures in its own module here."""

import os

# Tests never touch the user's folders or Kaggle: every path is moved per test
# (see fixtures_data.isolated_dirs) and the client only ever sees the local emulator.
os.environ.setdefault("KIT_COMPETITION", "digit-recognizer-fixture")

from fixtures_data import *  # noqa: E402,F401,F403
from fixtures_kaggle import *  # noqa: E402,F401,F403
