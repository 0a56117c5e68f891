"""Fixtures shared by every test directory."""

from tests.lab_fixture import lab

__all__ = ["lab"]
