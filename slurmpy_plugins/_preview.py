"""`slurmpy-plugins preview site-factor|job-submit`: run a handler over a
live cluster's jobs (read with ``squeue --json``) through the test kit,
i.e. the daemons' own decision code, without loading anything into
slurmctld.

site-factor: every pending job, with the SITE factor set() would give it
(and update()'s, if the handler defines update()), printed like sprio.
job-submit: every job slurmctld still knows (recent ones), turned back
into a request and given to submit(): accepted, what it would change, or
the refusal message.  A job record is not the request it came from
(Slurm and any job_submit plugin already filled in defaults), so fields the
request did not have may be set: read the result as "what the handler would
do with a job like this".
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from . import _abi, _config, _loader, _plugins, _slurmconf
from ._handlers import SiteFactorHandler

__all__ = ["main"]

_TABLE = _plugins.rows(_abi.ffi, _abi.lib)   # the plugin table
_KINDS = {"site-factor": "site_factor", "job-submit": "job_submit"}


class PreviewError(RuntimeError):
    """The preview cannot run; the message says why."""


def _handler(kind: str, args: argparse.Namespace) -> Any:
    from . import _check   # SlurmUser -> trusted uids, as the daemons and check do
    row = _plugins.by_kind(_TABLE, _KINDS[kind])
    base = row.base
    conf_path = args.slurm_conf or _slurmconf.default_path()
    if args.handler:
        path = args.path or os.path.dirname(os.path.abspath(conf_path))
        cfg = _config.parse(f"handler={args.handler},path={path}",
                            conf_key="--handler", conf_path=None)
        trusted = {0, os.getuid()}
    else:
        conf = _slurmconf.read(conf_path)
        trusted = _check._trusted(conf)
        if row.conf_key:
            cfg = _config.parse(conf.get(row.conf_key), conf_key=row.conf_key,
                                conf_path=conf.path, keys=row.py.conf_keys)
        else:
            assert row.conf_file is not None
            conf_file = os.path.join(conf.dir, row.conf_file)
            text, _ = _loader.read_settings(conf_file, trusted)
            cfg = _config.parse_file(conf_file, text, conf_path=conf.path, keys=row.py.conf_keys)
    return _loader.load(cfg, base, trusted).instance


def _squeue(args: argparse.Namespace, states: str | None) -> dict[str, Any]:
    if args.input:
        with open(args.input, encoding="utf-8") as f:
            return dict(json.load(f))
    argv = ["squeue", "--json"] + (["--states", states] if states else [])
    env = dict(os.environ)
    if args.slurm_conf:
        env["SLURM_CONF"] = args.slurm_conf
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    except OSError as e:
        raise PreviewError(f"cannot run squeue: {e}") from None
    if cp.returncode != 0:
        raise PreviewError(f"{' '.join(argv)} failed (exit {cp.returncode}): {cp.stderr.strip()}")
    return dict(json.loads(cp.stdout))


def site_factor(args: argparse.Namespace) -> dict[str, Any]:
    from . import testing as kit
    handler = _handler("site-factor", args)
    jobs = kit.jobs_from_json(_squeue(args, "PENDING"), states=("PENDING",))
    rows: list[dict[str, Any]] = []
    log: list[str] = []
    for job in jobs:
        out = kit.run_set(handler, job)
        log += out.log
        rows.append({"job_id": job.job_id, "partition": job.partition, "user": job.user_name,
                     "account": job.account, "site": out.factor if out.changed else None,
                     "ok": out.ok})
    has_update = type(handler).update is not SiteFactorHandler.update
    if has_update:
        up = kit.run_update(handler, jobs)
        log += up.log
        for r in rows:
            r["update"] = up.factors.get(int(r["job_id"])) if up.ok else None
    return {"hook": "site_factor", "jobs": rows, "update": has_update, "log": log}


_SKIP = frozenset({"job_id", "script", "environment", "spank_env", "submit_line", "alloc_node"})


def _request_of(job: Any) -> Any:
    """The job record as a job_submit request (see the module docstring)."""
    from . import testing as kit
    from ._jobdesc import UNLIMITED, JobDesc
    fields: dict[str, Any] = {}
    have = set(type(job).fields())
    for name, kind in JobDesc._kinds.items():
        if name in _SKIP or name not in have or kind[0] == "strv":
            continue
        value = getattr(job, name)
        if kind[0] == "int":
            lo, hi = kind[1]
            if kind[3] is not None and value == kind[3]:
                value = UNLIMITED       # the job record's INFINITE (TimeLimit=UNLIMITED)
            elif not isinstance(value, int) or not lo <= value <= hi:
                continue
        fields[name] = value
    return kit.make_job_desc(bare=True, **fields)


def job_submit(args: argparse.Namespace) -> dict[str, Any]:
    from . import testing as kit
    handler = _handler("job-submit", args)
    jobs = kit.jobs_from_json(_squeue(args, "all"))
    rows = []
    log: list[str] = []
    for job in jobs:
        out = kit.run_submit(handler, _request_of(job), submit_uid=job.user_id)
        log += out.log
        rows.append({"job_id": job.job_id, "name": job.name, "user": job.user_name,
                     "accepted": out.accepted, "changes": out.changes, "message": out.message})
    return {"hook": "job_submit", "jobs": rows, "log": log}


def _print(result: dict[str, Any]) -> None:
    if result["hook"] == "site_factor":
        cols = ["JOBID", "PARTITION", "USER", "ACCOUNT", "SITE"] + \
            (["UPDATE"] if result["update"] else [])
        print(" ".join(f"{c:>12}" for c in cols))
        for r in result["jobs"]:
            vals = [r["job_id"], r["partition"] or "", r["user"] or "", r["account"] or "",
                    "-" if r["site"] is None else r["site"]]
            if result["update"]:
                vals.append("-" if r["update"] is None else r["update"])
            print(" ".join(f"{v:>12}" for v in vals))
        if not result["jobs"]:
            print("(no pending jobs)")
    else:
        for r in result["jobs"]:
            if not r["accepted"]:
                what = f"refused: {r['message']}"
            elif r["changes"]:
                what = "accepted, changes " + ", ".join(f"{k}={v!r}" for k, v in r["changes"].items())
            else:
                what = "accepted unchanged"
            print(f"{r['job_id']:>8} {r['name'] or '':<20} {r['user'] or '':<10} {what}")
        if not result["jobs"]:
            print("(no jobs)")
    for line in result["log"]:
        print(f"log: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="slurmpy-plugins preview",
        description="Run a site_factor or job_submit handler over a live cluster's jobs "
                    "(squeue --json) without loading anything into slurmctld.")
    ap.add_argument("what", choices=("site-factor", "job-submit"))
    ap.add_argument("slurm_conf", nargs="?", help="slurm.conf (default: the one Slurm reads); "
                    "names the handler unless --handler is given")
    ap.add_argument("--handler", metavar="MODULE:CLASS", help="the handler to preview")
    ap.add_argument("--path", help="directory of --handler's module (default: slurm.conf's)")
    ap.add_argument("--input", metavar="FILE", help="squeue --json output to read instead "
                    "of running squeue")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    try:
        result = site_factor(args) if args.what == "site-factor" else job_submit(args)
    except (PreviewError, _config.ConfigError, _loader.HandlerError,
            _slurmconf.SlurmConfError, OSError, ValueError) as e:
        print(f"slurmpy-plugins preview: {e}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=1, default=str)   # UNLIMITED: "UNLIMITED"
        print()
    else:
        _print(result)
    return 0
