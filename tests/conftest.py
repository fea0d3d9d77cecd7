import os
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    # no RAPL counters on CPU test machines: every fit with an EnergyTracker says so once
    warnings.filterwarnings("ignore", "EnergyTracker: energy is estimated")
    yield
