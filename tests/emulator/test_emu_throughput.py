"""Keep the throughput script working; its figures are printed, never asserted."""

from __future__ import annotations

import pytest

from .throughput import main

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def test_throughput_script_runs() -> None:
    figures = await main(quick=True)
    assert all(value > 0 for value in figures.values())
