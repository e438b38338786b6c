"""Shared fixtures: a small utility (org tree, one user per role, a few customers)."""

from __future__ import annotations

import pytest

from mmis_testing import PASSWORD, REPO, SmallUtility, build_small_utility, spec_dir

__all__ = ["PASSWORD", "REPO", "SmallUtility", "build_small_utility", "spec_dir"]


def pytest_configure(config):
    from django.conf import settings

    # Same algorithm (argon2), test-sized cost; production settings are asserted in tests/unit/org.
    settings.PASSWORD_HASHERS = ["mmis.org.hashers.LightArgon2PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture
def utility(db) -> SmallUtility:
    return build_small_utility()


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the default language (a request in English leaves its thread in English)."""
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()
