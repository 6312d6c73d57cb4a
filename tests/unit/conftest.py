"""Fixtures of the unit suite."""

from tests.unit.fake_pipeline import world  # noqa: F401 - the fake-port pipeline fixture
