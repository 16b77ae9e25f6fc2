"""The per-process record of which new project ids have their block partitions."""

from __future__ import annotations

from internal.postgres.partitions import BlockCoverage, EnsuredBlocks


def test_nothing_is_covered_before_the_first_ensure_and_the_keeper_is_wanted() -> None:
    coverage = BlockCoverage()

    assert not coverage.covers(0)
    assert coverage.running_low(1)


def test_ids_up_to_the_last_ensured_block_are_covered_and_the_last_block_means_running_low() -> None:
    coverage = BlockCoverage()
    coverage.extend(EnsuredBlocks(created=2, covered_through=2047, block_size=1024))

    assert coverage.covers(1)
    assert coverage.covers(2047)
    assert not coverage.covers(2048)
    assert not coverage.running_low(1023)
    assert coverage.running_low(1024)


def test_coverage_never_shrinks_when_a_slower_process_reports_an_older_state() -> None:
    coverage = BlockCoverage()
    coverage.extend(EnsuredBlocks(created=0, covered_through=4095, block_size=1024))
    coverage.extend(EnsuredBlocks(created=0, covered_through=2047, block_size=1024))

    assert coverage.covers(4095)
