"""The statistics' arithmetic (_stats); the counts the plugin keeps and the
CLI reads are tests/host/test_stats.py."""
from __future__ import annotations

from slurmpy_plugins import _stats


def test_percentile_is_the_bucket_bound_capped_at_the_max():
    b = [0] * _stats.BUCKETS
    b[40] = 99          # 40 = 10 * 4 + 0: (us + 1) in [1024, 1280)
    b[60] = 1
    assert _stats.percentile(b, 10**9, 0.5) == 1278
    assert _stats.percentile(b, 10**9, 0.99) == 1278
    assert _stats.percentile(b, 10**9, 1.0) == 40958   # (5 << 15) / 4 - 2
    assert _stats.percentile(b, 30_000, 1.0) == 30_000
    assert _stats.percentile([0] * _stats.BUCKETS, 0, 0.5) is None
