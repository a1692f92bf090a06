"""Fixtures for the local Kaggle emulator and the real kaggle client (owned by kit.emulator / kit.kaggle_io)."""
