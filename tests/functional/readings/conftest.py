import importlib.util
import sys
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[2] / "integration" / "readings" / "factory.py"
if "readings_factory" in sys.modules:
    factory = sys.modules["readings_factory"]
else:
    _spec = importlib.util.spec_from_file_location("readings_factory", _path)
    factory = importlib.util.module_from_spec(_spec)
    sys.modules["readings_factory"] = factory
    _spec.loader.exec_module(factory)


@pytest.fixture
def world(utility):
    return factory.build_world(utility)


@pytest.fixture
def rf():
    return factory
