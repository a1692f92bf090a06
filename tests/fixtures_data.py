"""Fixtures for data, fixture competition and run folders (owned by kit.data / kit.fixture)."""
