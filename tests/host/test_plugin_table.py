"""The plugin table, tied across C and Python.

csrc/spm_plugins.h is the one C table (plugins: name, conf source, default
time limit, daemons, default workers; hooks: method name, context).  The C
compiler builds spm_plugins[]/spm_hooks[] from it in log.c; the test kit,
check and preview parse its text (_abi.parse_table); slurmpy_plugins/
_plugins.py is the Python table (base class, conf keys, kit entry points,
the slurm.conf key that selects the plugin).  Here: log.c is compiled for
real and its arrays printed, and must be what _abi parses; every C row has
a Python row and the other way round; hooks are methods of the base class,
have an entry in check's ACTIONS, and the kit entry points exist; and the
read-only job_desc fields of csrc/jobdesc_fields.h (JD_RO_*) are
_jobdesc.READ_ONLY.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess

import pytest

from slurmpy_plugins import _abi, _check, _config, _jobdesc, _plugins, _spank, testing

REPO = pathlib.Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
SLURM_CONF = "/etc/slurm/slurm.conf"

# Prints what the compiler made of spm_plugins.h (log.c's arrays, linked
# from log.c itself) and of jobdesc_fields.h, as JSON.
PROBE = r"""
#include <stdarg.h>
#include <stdio.h>
#include "spm.h"
#include "jobdesc_fields.h"

void log_var(int level, const char *fmt, ...) { (void)level; (void)fmt; }
int get_log_level(void) { return 0; }

static void str(const char *s) { if (s) printf("\"%s\"", s); else printf("null"); }

int main(void)
{
	printf("{\"plugins\": [");
	for (int i = 0; i < SPM_CTX_COUNT; i++) {
		const spm_plugin_t *p = &spm_plugins[i];
		printf("%s{\"ctx\": %d, \"name\": ", i ? ", " : "", p->ctx);
		str(p->name);
		printf(", \"conf_key\": ");
		str(p->conf_key);
		printf(", \"conf_file\": ");
		str(p->conf_file);
		printf(", \"default_timeout_ms\": %u, \"daemons\": %u, \"default_workers\": %u}",
		       p->default_timeout_ms, p->daemons, p->default_workers);
	}
	printf("], \"hooks\": [");
	for (int i = 0; i < SPM_HOOK_COUNT; i++) {
		printf("%s{\"hook\": %d, \"ctx\": %d, \"name\": ", i ? ", " : "",
		       spm_hooks[i].hook, spm_hooks[i].ctx);
		str(spm_hooks[i].name);
		printf("}");
	}
	printf("], \"jobdesc\": {\"rw\": [\"\"");
#define JD_NUM(n) printf(", \"%s\"", #n);
#define JD_STR(n) JD_NUM(n)
#define JD_RO_NUM(n)
#define JD_RO_STR(n)
	SPM_JOBDESC_FIELDS
#undef JD_NUM
#undef JD_STR
#undef JD_RO_NUM
#undef JD_RO_STR
	printf("], \"ro\": [\"\"");
#define JD_NUM(n)
#define JD_STR(n)
#define JD_RO_NUM(n) printf(", \"%s\"", #n);
#define JD_RO_STR(n) JD_RO_NUM(n)
	SPM_JOBDESC_FIELDS
	printf("]}}\n");
	return 0;
}
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugin_table")
    (d / "probe.c").write_text(PROBE)
    cp = subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", "-I", str(CSRC), "-o",
                         str(d / "probe"), str(d / "probe.c"), str(CSRC / "log.c")],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    out = subprocess.run([str(d / "probe")], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    table = json.loads(out)
    for kind in ("rw", "ro"):
        table["jobdesc"][kind] = table["jobdesc"][kind][1:]
    return table


def test_the_compiled_table_is_what_the_kit_parses(compiled):
    """log.c's spm_plugins[]/spm_hooks[] (what the daemon's Python reads as
    lib.spm_plugins/lib.spm_hooks) == _abi's parse of the same text (what
    the kit, check and preview read)."""
    plugins, hooks = _abi.parse_table(_abi.TABLE)
    assert compiled["plugins"] == plugins
    assert compiled["hooks"] == hooks
    # and the kit's stand-in lib serves exactly that
    lib, ffi = _abi.lib, _abi.ffi
    for row in plugins:
        c = lib.spm_plugins[row["ctx"]]
        for k, v in row.items():
            got = getattr(c, k)
            got = (ffi.string(got).decode() if got else None) if isinstance(v, str) or v is None \
                else got
            assert got == v, (row["name"], k)
    for row in hooks:
        c = lib.spm_hooks[row["hook"]]
        assert (c.hook, c.ctx, ffi.string(c.name).decode()) == (row["hook"], row["ctx"],
                                                                row["name"])


def test_every_row_has_its_other_side(compiled):
    """Every C plugin has one Python row (kind = name without "/python"),
    every Python row one C plugin; every hook is a method of the row's base
    class and has check's description; the kit entry points exist."""
    table = _plugins.rows(_abi.ffi, _abi.lib)
    assert sorted(r.kind for r in table.values()) == sorted(p.kind for p in _plugins.PLUGINS)
    assert [r.name for r in table.values()] == [p["name"] for p in compiled["plugins"]]
    hooks = {h["name"] for h in compiled["hooks"]}
    assert set(_check.ACTIONS) == hooks, "check's ACTIONS must describe every hook, and only hooks"
    for r in table.values():
        assert r.name == f"{r.kind}/python"
        assert r.hooks, f"{r.name} has no hooks"
        for name in r.hooks.values():
            assert callable(getattr(r.base, name, None)), (r.name, name)
        for entry in r.py.kit:
            assert entry in testing.__all__ and callable(getattr(testing, entry)), (r.name, entry)
        # the conf source: one of the two, and its keys parse
        assert (r.conf_key is None) != (r.conf_file is None), r.name
        if r.kind == "spank":
            # its arguments are its plugstack.conf line; no daemon boots it
            # (each hook starts Python in its own process, if defined), no pool
            assert r.conf_file == "plugstack.conf" and r.daemons == 0, r.name
            assert set(r.py.conf_keys) == set(_spank.KEYS)
            assert _spank.HOOKS == tuple(r.hooks[n] for n in sorted(r.hooks))
            _spank.parse_args(["handler=m:C", "path=/etc/slurm", "site=x"])
            continue
        if r.conf_file:
            assert r.conf_file == f"{r.kind}_python.conf"
            _config.parse_file(r.conf_file, "handler=m:C\n", conf_path=SLURM_CONF,
                               keys=r.py.conf_keys)
        else:
            _config.parse("handler=m:C", conf_key=r.conf_source, conf_path=SLURM_CONF,
                          keys=r.py.conf_keys)
        # jobcomp delivers its records in order, one at a time: no workers=
        common = set(_config.KEYS) - ({"workers"} if r.kind == "jobcomp" else set())
        assert common <= set(r.py.conf_keys), r.name
        assert r.default_workers >= 1
        assert r.daemons and not r.daemons & ~(_abi.lib.SPM_IN_SLURMCTLD | _abi.lib.SPM_IN_SLURMD
                                              | _abi.lib.SPM_IN_SLURMSTEPD), r.name
    # the test kit and the daemon's context read the same joined rows
    assert {r.kind: r.base for r in table.values()} == testing._BASES


def test_daemon_masks_are_the_daemon_numbers():
    lib = _abi.lib
    for d in ("SLURMCTLD", "SLURMD", "SLURMSTEPD"):
        assert getattr(lib, f"SPM_IN_{d}") == 1 << getattr(lib, f"SPM_DAEMON_{d}")


def test_read_only_job_desc_fields_are_c_s(compiled):
    """_jobdesc.READ_ONLY == jobdesc_fields.h's JD_RO_*, the char ** fields
    of spm_jobdesc_t but environment (the only one jobdesc.c writes back)
    and the fields jobdesc_fields.h names as copied in by hand, by their
    Python names; and jobdesc_fields.h covers every other field of
    spm_jobdesc_t, each once."""
    ffi = _abi.ffi
    fields = dict(ffi.typeof("spm_jobdesc_t").fields)
    strv = {n for n, f in fields.items() if f.type.cname == "char * *"}
    renamed = {_jobdesc._RENAMED.get(n, n) for n in strv} - {"environment"}
    ro, rw = compiled["jobdesc"]["ro"], compiled["jobdesc"]["rw"]
    # copied in by hand (compat.h: job_id, or step_id.job_id from 25.11;
    # snapshot.c looks up the other three), never written back, as
    # jobdesc_fields.h says
    ro_by_hand = {"job_id", "user_name", "default_account", "default_qos"}
    header = (CSRC / "jobdesc_fields.h").read_text()
    assert all(n in header for n in ro_by_hand | strv)
    assert _jobdesc.READ_ONLY == set(ro) | renamed | ro_by_hand, (
        "csrc/jobdesc_fields.h JD_RO_* (and the char ** fields) != _jobdesc.READ_ONLY")
    by_hand = strv | set(_jobdesc._INTERNAL) | set(_jobdesc._MEM_PAIR) | ro_by_hand
    assert len(ro + rw) == len(set(ro + rw))
    assert set(ro + rw) == set(fields) - by_hand, (
        "csrc/jobdesc_fields.h must list every spm_jobdesc_t field not handled by hand")


# -- clear errors --------------------------------------------------------------

def _edit(old: str, new: str) -> str:
    assert old in _abi.TABLE
    return _abi.TABLE.replace(old, new)


@pytest.mark.parametrize("old,new,message", [
    ('SPM_HOOK_ROW(JS_MODIFY, JOB_SUBMIT, "modify") \\\n', "",
     r"spm_plugins.h: no row for SPM_HOOK_\* = \[8\]"),
    ('SPM_HOOK_ROW(JS_MODIFY, JOB_SUBMIT, "modify")', 'SPM_HOOK_ROW(JS_SUBMIT, JOB_SUBMIT, "modify")',
     r"spm_plugins.h:\d+: SPM_HOOK_JS_SUBMIT has a row already"),
    ('SPM_HOOK_ROW(JS_MODIFY, JOB_SUBMIT, "modify")', 'SPM_HOOK_ROW(JS_MODIFY, JOBSUBMIT, "modify")',
     r"spm_plugins.h:\d+: 'SPM_CTX_JOBSUBMIT' is not a number or an SPM_\* constant"),
    ('"job_submit_python.conf", SPM_JS_DEFAULT_TIMEOUT_MS',
     '"job_submit_python.conf" SPM_JS_DEFAULT_TIMEOUT_MS',
     r"spm_plugins.h:\d+: not a SPM_PLUGIN_FILE\(...\) row of the grammar"),
    ("SPM_IN_SLURMCTLD | SPM_IN_SLURMD", "SPM_IN_SLURMCTLD | SPM_IN_SLURM",
     r"spm_plugins.h:\d+: 'SPM_IN_SLURM' is not"),
])
def test_a_broken_c_table_is_refused_naming_the_line(old, new, message):
    with pytest.raises(_abi.TableError, match=message):
        _abi.parse_table(_edit(old, new))


def test_a_row_missing_on_one_side_is_refused_naming_both_files(monkeypatch):
    ffi, lib = _abi.ffi, _abi.lib
    full = _plugins.PLUGINS
    monkeypatch.setattr(_plugins, "PLUGINS", full[:2])
    with pytest.raises(_plugins.TableError,
                       match=r"csrc/spm_plugins.h: plugin 'job_submit/python' has no row in "
                             r"slurmpy_plugins/_plugins.py PLUGINS"):
        _plugins.rows(ffi, lib)
    monkeypatch.setattr(_plugins, "PLUGINS", full + (dataclasses.replace(full[0], kind="acct_gather"),))
    with pytest.raises(_plugins.TableError,
                       match=r"slurmpy_plugins/_plugins.py: PLUGINS row\(s\) \['acct_gather'\] have no "
                             r"row in csrc/spm_plugins.h"):
        _plugins.rows(ffi, lib)
    monkeypatch.setattr(_plugins, "PLUGINS", full + (full[2],))
    with pytest.raises(_plugins.TableError, match="names a kind twice"):
        _plugins.rows(ffi, lib)


def test_a_hook_that_is_no_method_of_the_base_is_refused(monkeypatch):
    class Bare:
        pass
    row = _plugins.PLUGINS[1]
    monkeypatch.setattr(_plugins, "PLUGINS", (_plugins.PLUGINS[0],
                                              dataclasses.replace(row, base=Bare),
                                              _plugins.PLUGINS[2]))
    with pytest.raises(_plugins.TableError,
                       match=r"hook 'set' of 'site_factor/python' is not a method of Bare"):
        _plugins.rows(_abi.ffi, _abi.lib)
