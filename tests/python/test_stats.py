"""The statistics' arithmetic (_stats), and the reading of the node's
shared spank file (made here as spank_python.c makes it); the counts the
plugins keep and the CLI reads are tests/host/test_stats.py."""
from __future__ import annotations

import json

from slurmpy_plugins import _stats


def _cli(capsys, conf, *args):
    assert _stats.main([str(conf), *args]) == 0
    return capsys.readouterr().out


def test_percentile_is_the_bucket_bound_capped_at_the_max():
    b = [0] * _stats.BUCKETS
    b[40] = 99          # 40 = 10 * 4 + 0: (us + 1) in [1024, 1280)
    b[60] = 1
    assert _stats.percentile(b, 10**9, 0.5) == 1278
    assert _stats.percentile(b, 10**9, 0.99) == 1278
    assert _stats.percentile(b, 10**9, 1.0) == 40958   # (5 << 15) / 4 - 2
    assert _stats.percentile(b, 30_000, 1.0) == 30_000
    assert _stats.percentile([0] * _stats.BUCKETS, 0, 0.5) is None


def _write_spank_file(path, **hooks):
    """A spank.<host>.shared file as spank_python.c makes it (pid 0)."""
    ffi, lib = _stats.ffi, _stats.lib
    m = ffi.new("spm_stats_file_t *")
    m.magic, m.version = lib.SPM_STATS_MAGIC, lib.SPM_STATS_VERSION
    m.size, m.pid, m.daemon = ffi.sizeof("spm_stats_file_t"), 0, lib.SPM_DAEMON_SLURMSTEPD
    m.started, m.ctx_count, m.hook_count = 1_700_000_000, lib.SPM_CTX_COUNT, lib.SPM_HOOK_COUNT
    m.host, m.release = _stats._this_host().encode(), b"22.05.8"
    for name, (ok, failed) in hooks.items():
        h = m.hooks[getattr(lib, "SPM_HOOK_SP_" + name.upper())]
        h.calls, h.ok, h.failed, h.max_us = ok + failed, ok, failed, 900
        h.buckets[20] = ok + failed
    e = m.errors[lib.SPM_HOOK_SP_USER_INIT]
    e.time, e.where, e.text = 1_700_000_500, b"/etc/slurm/h/tag.py:12", b"RuntimeError: no"
    path.write_bytes(bytes(ffi.buffer(m)))


def test_the_nodes_shared_spank_file_is_read_as_such(tmp_path, capsys):
    spool = tmp_path / "spool-n1"
    (spool / "slurmpy-stats").mkdir(parents=True)
    slurm_conf = tmp_path / "slurm.conf"
    slurm_conf.write_text(f"StateSaveLocation={tmp_path}/state\n"
                          f"SlurmdSpoolDir={tmp_path}/spool-%n\n")
    path = spool / "slurmpy-stats" / f"spank.{_stats._this_host()}.shared"
    _write_spank_file(path, user_init=(4, 1), task_exit=(5, 0))
    [d] = json.loads(_cli(capsys, slurm_conf, "--json"))["daemons"]
    assert (d["daemon"], d["pid"], d["state"], d["path"]) == ("spank", 0, "running", str(path))
    assert d["plugins"] == {} and d["jobcomp"] is None
    assert d["notes"] == [_stats.SPANK_NOTE] and "task_init" in d["notes"][0]
    hooks = {x["hook"]: x for x in d["hooks"]}
    assert set(hooks) == {"user_init", "task_exit"}
    assert (hooks["user_init"]["calls"], hooks["user_init"]["failed"]) == (5, 1)
    assert hooks["user_init"]["last_error"] == {
        "where": "/etc/slurm/h/tag.py:12", "text": "RuntimeError: no", "time": 1_700_000_500}
    table = _cli(capsys, slurm_conf)
    assert "spank/python in this node's root processes" in table and "not counted" in table
    om = _cli(capsys, slurm_conf, "--openmetrics")
    assert ('slurmpy_hook_calls_total{daemon="spank",pid="0",plugin="spank/python",'
            'hook="user_init"} 5') in om
    # another release's layout: said, not misread
    path.write_bytes(path.read_bytes()[:100])
    [d] = json.loads(_cli(capsys, slurm_conf, "--json"))["daemons"]
    assert d["state"] == "unreadable" and not d["hooks"]
