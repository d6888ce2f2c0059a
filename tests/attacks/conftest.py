"""Fixtures for the attack tests (helpers live in attack_fixtures.py, a uniquely named module)."""

from attack_fixtures import _one_thread, evaluator, surrogate, victim_oracle  # noqa: F401
