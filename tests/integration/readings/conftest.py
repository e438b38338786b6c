import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("readings_factory", Path(__file__).with_name("factory.py"))
factory = importlib.util.module_from_spec(_spec)
sys.modules["readings_factory"] = factory
_spec.loader.exec_module(factory)


@pytest.fixture
def world(utility):
    return factory.build_world(utility)


@pytest.fixture
def rf():
    return factory
