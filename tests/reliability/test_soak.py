"""The soak benchmark (`python -m bench.soak`), run briefly at small scale.

20 conversations for 3 seconds against a real uvicorn process, slow readers and
clients that leave mid-reply among them: no errors, every turn the client got in
full is stored in full, and the server exits cleanly when told to stop. (Memory
flatness needs the full run: `python -m bench.soak`, 200 conversations for 60 s.)
"""

from __future__ import annotations

import pytest

from bench.soak import soak

pytestmark = pytest.mark.uvicorn


async def test_a_short_soak_has_no_errors_and_persists_every_completed_turn() -> None:
    report = await soak(20, 3.0, slow_share=0.25, disconnecting_share=0.25, seed=3)

    assert report.errors == {}, report.error_samples
    assert report.kinds.keys() == {"normal", "slow", "disconnecting"}
    assert report.turns_completed >= 20
    assert report.turns_abandoned >= 1  # some clients did leave mid-reply
    assert report.missing == []
    assert report.persisted == report.turns_completed
    assert report.rss_mb  # the server's memory was sampled
    assert report.server_exit_code in (0, -15)  # stopped by SIGTERM, gracefully
    assert report.server_log_errors == []
