"""`slurmpy-plugins check [SLURM_CONF]`: what the daemons will do with the
handlers a slurm.conf names, before they reach a cluster.

It reads the same parameters the plugins read, runs the same permission
checks and the same loader (slurmpy_plugins._config and _loader: the code
the daemons run, not a copy), imports and instantiates each handler, and
reports the hooks it overrides, what Slurm does with each, every cause that
would make a plugin fail closed (with the daemon's own message), known
configuration traps, and Lua and shell habits in the hooks (_habits: read
from the code, and job_submit's and site_factor's hooks run once on sample
records).  Exit status: 0 when every configured plugin would load and no
hook has a certain problem (traps are warnings; --strict makes them
errors; notes never fail), 1 otherwise, 2 when slurm.conf or --jobs cannot
be read.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from . import _abi, _chain, _config, _context, _habits, _loader, _plugins, _slurmconf, _spank

__all__ = ["check", "main"]

# What Slurm does with each hook (docs/handlers.md, "the handler API").
ACTIONS = {
    "prolog": "slurmd, as root, before the job's first step on each node; raising drains the node",
    "epilog": "slurmd, as root, after the job's last step on each node; raising drains the node",
    "prolog_slurmctld": "slurmctld, on a worker thread, before the job launches; raising requeues "
                        "the job, or kills it if it cannot be requeued",
    "epilog_slurmctld": "slurmctld, on a worker thread, after the job ends; raising is logged",
    "set": "slurmctld, under the job write lock, at submission and priority recalculation: "
           "the job's SITE factor (None: unchanged)",
    "update": "slurmctld, under the job write lock, every PriorityCalcPeriod: "
              "{job_id: factor} for pending jobs",
    "reconfig": "slurmctld, on scontrol reconfigure",
    "submit": "slurmctld, for sbatch/srun/salloc (and --test-only): change the request, or "
              "raise Reject to refuse it with a message the user sees",
    "modify": "slurmctld, for scontrol update job: change the update, or raise Reject",
    "job_end": "slurmctld's deliverer thread, once per finished job (at least once: "
               "de-duplicate on job.key), in order; raising keeps the record, retried with backoff",
    "job_start": "slurmctld's deliverer thread, once per started job (Slurm 25.05 and later, "
                 "JobCompParams=enable_job_start); raising keeps the record, retried",
    "init": "every process that loads spank_python.so (srun, sbatch, salloc, slurmstepd, "
            "slurmd): Python starts in all of them; raising fails the command or the step",
    "init_post_opt": "srun/sbatch/salloc and slurmstepd, once the options are known (Python "
                     "starts in every srun/sbatch); raising fails the command or the step",
    "local_user_init": "srun, as the user, before the step is launched; raising fails srun",
    "user_init": "slurmstepd, as the user, before the tasks start; raising fails the step",
    "task_init_privileged": "slurmstepd's task child, as root; raising fails the task",
    "task_init": "slurmstepd's task child, as the user, before exec; raising fails the task",
    "task_post_fork": "slurmstepd, as root, for each forked task; raising fails the step",
    "task_exit": "slurmstepd, as root, for each task that exited; raising is logged",
    "exit": "srun/sbatch/salloc and slurmstepd, at the end (Python starts in every srun/sbatch); "
            "raising is logged",
    "job_prolog": "slurmd's job_script process, as root, beside the prolog on each node; "
                  "raising (required plugin) drains the node",
    "job_epilog": "slurmd's job_script process, as root, beside the epilog on each node; "
                  "raising (required plugin) drains the node",
    "slurmd_exit": "slurmd, as it shuts down; raising is logged",
}

# The plugin table (csrc/spm_plugins.h joined with _plugins.PLUGINS).
_TABLE = _plugins.rows(_abi.ffi, _abi.lib)


@dataclass
class PluginReport:
    plugin: str                  # "prep/python", "site_factor/python"
    conf_key: str                # the slurm.conf key of its parameters
    params: str | None
    loaded: bool = False
    handler: str | None = None
    module_file: str | None = None   # the handler's file, or the handlers= directory
    files: list[str] = field(default_factory=list)        # handlers=: its files, in order
    hooks: dict[str, str] = field(default_factory=dict)   # name -> what Slurm does
    error: str | None = None     # the daemon's "handler not loaded: ..." text
    traceback: str | None = None


@dataclass
class Report:
    slurm_conf: str
    plugins: list[PluginReport] = field(default_factory=list)
    traps: list[str] = field(default_factory=list)      # warnings: --strict fails on them
    problems: list[str] = field(default_factory=list)   # hooks that fail for certain
    notes: list[str] = field(default_factory=list)      # information: never fails
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.errors and not self.problems and all(p.loaded for p in self.plugins)
                and bool(self.plugins))


def _overridden(instance: object, base: type) -> list[str]:
    cls = type(instance)
    return [n for n in ACTIONS if hasattr(base, n) and getattr(cls, n) is not getattr(base, n)]


def _trusted(conf: _slurmconf.SlurmConf) -> set[int]:
    user = conf.get("SlurmUser", "root") or "root"
    try:
        return {0, int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid}
    except KeyError:
        raise _slurmconf.SlurmConfError(
            f"{conf.where.get('slurmuser', conf.path)}: SlurmUser={user!r} is not a known user") from None


def _check_plugin(row: _plugins.Row, conf: _slurmconf.SlurmConf,
                  trusted: set[int]) -> tuple[PluginReport, Any]:
    """The report's conf_key: the slurm.conf key of the parameters, or the
    path of the plugin's conf file (job_submit); and the handler instance
    (None when it would not load)."""
    plugin, base = row.name, row.base
    file_conf = row.conf_file is not None
    conf_key = os.path.join(conf.dir, row.conf_file) if row.conf_file else row.conf_source
    params = None if file_conf else conf.get(conf_key)
    rep = PluginReport(plugin=plugin, conf_key=conf_key, params=params)
    try:
        if file_conf:
            text, _ = _loader.read_settings(conf_key, trusted)
            cfg = _config.parse_file(conf_key, text, conf_path=conf.path, keys=row.py.conf_keys)
        else:
            cfg = _config.parse(params, conf_key=conf_key, conf_path=conf.path,
                                keys=row.py.conf_keys)
        rep.handler = cfg.handler
        loaded = _loader.load(cfg, base, trusted, tuple(row.hooks.values()))
    except (_config.ConfigError, _loader.HandlerError) as e:
        rep.error = "handler not loaded: " + _context.refusal(plugin, e)
        cause = e.__cause__
        if cause is not None and not isinstance(cause, SyntaxError):
            rep.traceback = _loader.format_tb(cause)
        return rep, None
    rep.loaded = True
    rep.module_file = loaded.module_file
    rep.files = [m.name for m in loaded.members]
    rep.hooks = {n: ACTIONS[n] for n in _overridden(loaded.instance, base)}
    return rep, loaded.instance


def _check_plugstack(row: _plugins.Row, conf: _slurmconf.SlurmConf, trusted: set[int],
                     report: Report) -> list[PluginReport]:
    """spank/python: the spank_python.so line of plugstack.conf
    (PlugStackConfig, default beside slurm.conf): its arguments, the
    handler loaded as slurmstepd loads it, and its class read as
    spank_python.so reads the module file (options, hooks)."""
    path = conf.get("PlugStackConfig") or os.path.join(conf.dir, "plugstack.conf")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except OSError as e:
        report.errors.append(f"{path}: cannot be read: {e}")
        return []
    reps: list[PluginReport] = []
    seen_line = ""
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or os.path.basename(words[1]) != "spank_python.so":
            continue
        where = f"{path}:{n}"
        if words[0] not in ("required", "optional"):
            report.errors.append(f"{where}: {words[0]!r} must be 'required' or 'optional'")
            continue
        if seen_line:
            report.errors.append(f"{where}: spank_python.so is listed again ({seen_line} "
                                 "already lists it): SPANK loads a plugin once, so one line "
                                 "must serve every handler")
            continue
        seen_line = where
        params = " ".join(words[2:])
        try:
            cfgs: tuple[_config.Config, ...] = _spank.parse_args(words[2:]).cfgs
        except _config.ConfigError as e:
            reps.append(PluginReport(plugin=row.name, conf_key=where, params=params,
                                     error=f"handler not loaded: {row.name}: {e}"))
            continue
        options: dict[str, str] = {}
        for cfg in cfgs:              # one report per handler= of the line
            rep = PluginReport(plugin=row.name, conf_key=where, params=params,
                               handler=cfg.handler)
            reps.append(rep)
            try:
                loaded = _loader.load(cfg, row.base, trusted, _spank.HOOKS)
                for m in loaded.members or (loaded,):
                    _spank.check_declared(type(m.instance), getattr(m, "path", loaded.module_file))
                for o in type(loaded.instance).options:
                    if o.name in options:
                        raise _loader.HandlerError(
                            f"{loaded.module_file}: option --{o.name} is declared by "
                            f"{options[o.name]} too: one of them would not be registered")
                    options[o.name] = cfg.handler
            except _loader.HandlerError as e:
                rep.error = f"handler not loaded: {row.name}: {e}"
                cause = e.__cause__
                if cause is not None and not isinstance(cause, SyntaxError):
                    rep.traceback = _loader.format_tb(cause)
                continue
            rep.loaded = True
            rep.module_file = loaded.module_file
            rep.files = [m.name for m in loaded.members]
            rep.hooks = {n: ACTIONS[n] for n in _overridden(loaded.instance, row.base)}
    return reps


def _prep_traps(rep: PluginReport, conf: _slurmconf.SlurmConf) -> list[str]:
    traps = []
    if "epilog" in rep.hooks and not (conf.get("Epilog") or "").strip():
        traps.append("prep/python: " + _context.EPILOG_WARNING.removeprefix("warning: "))
    return traps


def _prep_notes(rep: PluginReport) -> list[str]:
    """Not a trap (so not a --strict failure): what every prolog()/epilog()
    handler needs, which this machine cannot see."""
    if {"prolog", "epilog"} & set(rep.hooks):
        return ["prep/python: the handler defines prolog()/epilog(): slurmd loads it on every "
                "compute node, so the handler files and the plugin must be installed there too "
                "(this check only sees this machine)"]
    return []


def _site_factor_traps(rep: PluginReport, conf: _slurmconf.SlurmConf) -> list[str]:
    traps = []
    if (conf.get("PriorityType") or "").strip() != "priority/multifactor":
        traps.append(
            "site_factor/python: PriorityType is not priority/multifactor: Slurm never "
            "loads the site factor plugin")
    acct = (conf.get("AccountingStorageType") or "").strip()
    if "update" in rep.hooks and acct != "accounting_storage/slurmdbd":
        traps.append(
            "site_factor/python: the handler defines update(), but AccountingStorageType is "
            f"{acct or 'not set'}: Slurm 22.05 only runs the periodic priority recalculation, "
            "the one caller of update(), with accounting_storage/slurmdbd")
    return traps


# Known configuration traps, per plugin kind (a plugin may have none).
def _jobcomp_traps(rep: PluginReport, conf: _slurmconf.SlurmConf) -> list[str]:
    traps = []
    params = [p.strip() for p in (conf.get("JobCompParams") or "").split(",")]
    if "job_start" in rep.hooks and "enable_job_start" not in params:
        traps.append("jobcomp/python: the handler defines job_start(), but slurm.conf has no "
                     "JobCompParams=enable_job_start: Slurm (25.05 and later) never calls it")
    if rep.loaded and "job_end" not in rep.hooks:
        traps.append("jobcomp/python: the handler does not define job_end(): every finished "
                     "job's record is taken and dropped")
    return traps


TRAPS = {"prep": _prep_traps, "site_factor": _site_factor_traps, "jobcomp": _jobcomp_traps}


class JobsError(ValueError):
    """--jobs cannot be read; the message names the file."""


def read_jobs(path: str) -> list[Any]:
    """The jobs of `squeue --json` output in file `path` (--jobs)."""
    from . import testing as kit
    try:
        jobs = kit.jobs_from_json(path)
    except OSError as e:
        raise JobsError(f"--jobs {path}: cannot be read: {e}") from None
    except ValueError as e:     # JSONDecodeError (line, column), kit.JSONError (job, key)
        raise JobsError(f"--jobs {path}: {e}") from None
    if not jobs:
        raise JobsError(f"--jobs {path}: no jobs in it")
    return jobs


def _partition_names(conf: _slurmconf.SlurmConf) -> list[str]:
    names = []
    for e in conf.entities:
        for k, v in e.items():
            if k.lower() == "partitionname" and v.lower() != "default":
                names.append(v)
    return names


def check(path: str, jobs: list[Any] | None = None) -> Report:
    """Check the slurmpy plugins a slurm.conf configures (every row of the
    plugin table); `jobs` (read_jobs()) are the records job_submit's and
    site_factor's hooks run on (None: the kit's samples).  Raises
    SlurmConfError when slurm.conf itself cannot be read."""
    conf = _slurmconf.read(path)
    report = Report(slurm_conf=path)
    trusted = _trusted(conf)
    for row in _TABLE.values():
        if row.kind == "spank":
            report.plugins += _check_plugstack(row, conf, trusted, report)
        elif row.selected(conf.get(row.py.selected_by)):
            rep, instance = _check_plugin(row, conf, trusted)
            report.plugins.append(rep)
            if row.kind in TRAPS:
                report.traps += TRAPS[row.kind](rep, conf)
            if row.kind == "prep":
                report.notes += _prep_notes(rep)
            if instance is not None:
                hooks = list(rep.hooks)
                found = _habits.Findings()
                for one in [m.instance for m in _chain.members_of(instance)] or [instance]:
                    mine = [h for h in hooks if h in _overridden(one, row.base)]
                    f1 = _habits.read_hooks(one, mine, rep.plugin)
                    found.problems += f1.problems
                    found.notes += f1.notes
                    found.bad_sig |= f1.bad_sig
                    found.returned |= f1.returned
                if row.kind in ("job_submit", "site_factor"):
                    runnable = [h for h in hooks if h not in found.bad_sig]
                    found2 = _habits.run_samples(row.kind, instance, runnable, rep.plugin,
                                                 rep.module_file, jobs, _partition_names(conf),
                                                 found.returned)
                    found.problems += found2.problems
                    found.notes += found2.notes
                report.problems += found.problems
                report.notes += found.notes
    if not report.plugins:
        ways = [f"{r.py.selected_by} with {r.name}" if r.py.selected_list
                else f"{r.py.selected_by}={r.name}" for r in _TABLE.values() if r.kind != "spank"]
        ways.append("a spank_python.so line in plugstack.conf")
        report.errors.append(f"{path} configures no slurmpy plugin ("
                             f"{', '.join(ways[:-1])}, or {ways[-1]})")
    return report


def _print_text(report: Report, out: TextIO) -> None:
    print(f"slurm.conf: {report.slurm_conf}", file=out)
    for p in report.plugins:
        source = p.conf_key if p.params is None else f"{p.conf_key}={p.params}"
        print(f"\n{p.plugin} ({source})", file=out)
        if p.loaded and p.files:
            print(f"  OK: handlers from {p.module_file}, in this order: {', '.join(p.files)}",
                  file=out)
        elif p.loaded:
            print(f"  OK: handler {p.handler} from {p.module_file}", file=out)
        if p.loaded:
            if not p.hooks:
                print("  hooks: none overridden (the plugin does nothing)", file=out)
            for name, what in p.hooks.items():
                print(f"  {name}(): {what}", file=out)
        else:
            print(f"  FAILS CLOSED: {p.error}", file=out)
            print("  (every hook is called and fails: no job runs unchecked)", file=out)
            if p.traceback:
                for line in p.traceback.splitlines():
                    print(f"    {line}", file=out)
    if report.notes:
        print("\nnotes:", file=out)
        for t in report.notes:
            print(f"  - {t}", file=out)
    if report.traps:
        print("\nwarnings:", file=out)
        for t in report.traps:
            print(f"  - {t}", file=out)
    if report.problems:
        print("\nproblems (every call is affected):", file=out)
        for t in report.problems:
            print(f"  - {t}", file=out)
    for e in report.errors:
        print(f"\nerror: {e}", file=out)
    print(f"\n{'OK' if report.ok else 'NOT OK'}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="slurmpy-plugins check",
        description="Check the slurmpy handlers a slurm.conf configures, with the daemons' own "
                    "loader and permission checks.")
    ap.add_argument("slurm_conf", nargs="?", default=None,
                    help="slurm.conf to read (default: $SLURM_CONF, else /etc/slurm/slurm.conf)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--strict", action="store_true", help="treat warnings as errors "
                    "(notes never fail)")
    ap.add_argument("--jobs", metavar="FILE", help="squeue --json output: run job_submit's "
                    "and site_factor's hooks on these jobs instead of the kit's samples")
    args = ap.parse_args(argv)
    path = args.slurm_conf or _slurmconf.default_path()
    try:
        jobs = read_jobs(args.jobs) if args.jobs else None
        report = check(path, jobs)
    except (_slurmconf.SlurmConfError, JobsError) as e:
        if args.json:
            print(json.dumps({"slurm_conf": path, "ok": False, "errors": [str(e)]}))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    ok = report.ok and not (args.strict and report.traps)
    if args.json:
        print(json.dumps(dict(asdict(report), ok=ok), indent=2))
    else:
        _print_text(report, sys.stdout)
    return 0 if ok else 1
