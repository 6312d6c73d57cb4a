"""Fixtures of the database suite."""

from tests.db.fake_pipeline import world  # noqa: F401 - the fake-port pipeline fixture
