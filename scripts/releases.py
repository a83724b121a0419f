"""make releases: build the plugins, libslurmpy and the C test host against
every Slurm release the project supports, run the unit suite (tests/host,
in the C host, and tests/python) against each, and print one table.

    python scripts/releases.py --base-src DIR [--tarballs DIR] [--only VER ...]

Each release other than 22.05.8 is configured once into the cache that
scripts/slurm-release.sh keeps (/var/cache/slurmpy/<version>-<sha12>/, keyed
by the tarball's SHA-256, checked against SHA256SUMS), with libslurmfull.so
built there too; the plugins and the host go to build/releases/<version>/.
22.05.8 is the machine's own release: its configured tree is the one `make
deps` made (--base-src), libslurmfull is Debian's, and the plugins and host
are `make build`'s (build/plugins, build/host), so nothing is built twice.
Its unit suite is not run again when build/junit-22.05.8.xml (what a whole
`make unit` or `make test` writes) is from a run that started after every
file the suite depends on last changed: its tests/host and tests/python
results are shown.
The same holds for a release whose whole `make test-X` ran first (--reuse
VER=FILE: 24.11.5 in the trixie root, 25.11.7, 26.05.3): its tests/host and
tests/python results against the same sources, with that release's own build.
Nor is any release's when its results from an earlier run of this script
(build/releases/<version>/unit.xml) are current in the same sense (--rerun:
run them all the same): .ci/run runs the tarball releases' suites early,
beside the daemon tests, and the last run shows them.

The suites run --jobs at a time (they mostly wait: `make unit` takes about
60 s of CPU in 200 s), each in a pytest process of its own, while the next
release builds.  Exit status: 0 only if every release built and its suite
ran with no failure and at least one test passed.
"""
import argparse
import concurrent.futures
import datetime
import os
import pathlib
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

REPO = pathlib.Path(__file__).resolve().parents[1]
RELEASE_SH = REPO / "scripts" / "slurm-release.sh"
HOST_SH = REPO / "tests" / "host" / "build.sh"
SYSTEM_LIBDIR = "/usr/lib/x86_64-linux-gnu/slurm-wlm"

# (version, where its source comes from)
RELEASES = [
    ("22.05.8", "debian12"),          # make deps: apt-get source
    ("23.02.8", "tarball"),
    ("23.11.11", "tarball"),
    ("24.05.8", "tarball"),
    ("24.11.5", "debian-orig"),       # Debian 13's orig tarball, Debian pool
    ("25.05.8", "tarball"),
    ("25.11.7", "tarball"),
    ("26.05.3", "tarball"),
]
# Debian 13's orig tarball, as the trixie Sources index lists it
# (scripts/trixie-root.sh pins the same).
DEBIAN_ORIG_SHA256 = {
    "24.11.5": "e1a5547edd212c38b5e3230a284133f777b32746551f094aaa81cc4af375e332",
}


class Failed(Exception):
    pass


def log(msg):
    print(f"releases: {msg}", file=sys.stderr, flush=True)


def run(cmd, logfile, env=None, append=True):
    """Run cmd with its output to logfile; stdout (the last line) returned."""
    with open(logfile, "a" if append else "w") as f:
        f.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        f.flush()
        res = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                             stderr=f, text=True, env=env, cwd=REPO)
        f.write(res.stdout)
    if res.returncode:
        raise Failed(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exited "
                     f"{res.returncode} (see {logfile})")
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""


def make_build(args, build_dir, src, logfile):
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)      # our own -j, not the caller's
    env.pop("MFLAGS", None)
    env.pop("MAKELEVEL", None)
    run(["make", "-j2", "--no-print-directory", "build", f"BUILD={build_dir}",
         f"SLURM_SRC={src}", f"VENV={args.venv}"], logfile, env=env)


def build_release(args, ver, kind):
    """Configure (cached), libslurmfull (cached), plugins, host.  Returns
    the dict of what the suite needs."""
    out = REPO / "build" / "releases" / ver
    out.mkdir(parents=True, exist_ok=True)
    logfile = out / "build.log"
    logfile.write_text("")
    t0 = time.monotonic()
    if kind == "debian12":
        src = pathlib.Path(args.base_src)
        if not (src / "config.h").is_file():
            raise Failed(f"{src}: not a configured tree (run make deps)")
        have = _version_of(src)
        if have != ver:
            raise Failed(f"{src}/config.h is Slurm {have}, not {ver}")
        libdir = pathlib.Path(SYSTEM_LIBDIR)
        build_dir = REPO / "build"
        host_dir = build_dir / "host"
    else:
        if kind == "debian-orig":
            tarball = run([RELEASE_SH, "debian-orig", ver], logfile)
            sums = "SHA256:" + DEBIAN_ORIG_SHA256[ver]
        else:
            tarball = pathlib.Path(args.tarballs) / f"slurm-{ver}.tar.xz"
            sums = pathlib.Path(args.tarballs) / "SHA256SUMS"
        src = pathlib.Path(run([RELEASE_SH, "configure", tarball, sums], logfile))
        libdir = pathlib.Path(run([RELEASE_SH, "host-libs", src], logfile))
        build_dir = out
        host_dir = out / "host"
    make_build(args, build_dir, src, logfile)
    host_dir.mkdir(parents=True, exist_ok=True)
    host = host_dir / "spm_host"
    newest = max(HOST_SH.stat().st_mtime,
                 (REPO / "tests" / "host" / "spm_host.c").stat().st_mtime,
                 (REPO / "tests" / "host" / "spm_host.h").stat().st_mtime,
                 (REPO / "csrc" / "compat.h").stat().st_mtime)
    if not host.exists() or host.stat().st_mtime < newest:
        env = dict(os.environ, SLURM_LIBDIR=str(libdir))
        tmp = host_dir / f"spm_host.tmp.{os.getpid()}"
        run([HOST_SH, src, tmp], logfile, env=env)
        os.replace(tmp, host)
    return dict(ver=ver, src=src, libdir=libdir, plugins=build_dir / "plugins",
                host_dir=host_dir, out=out, build_s=time.monotonic() - t0)


def _version_of(src):
    for line in (pathlib.Path(src) / "config.h").read_text().splitlines():
        if line.startswith("#define SLURM_VERSION_STRING"):
            return line.split('"')[1]
    return "?"


def _inputs_mtime(b, with_plugins=True):
    """Newest mtime of what a unit run depends on (with_plugins: the
    release's plugins built here too, when the reused run ran on them)."""
    newest = 0.0
    for d in ("csrc", "slurmpy_plugins", "tests/host", "tests/python", "tests/harness"):
        for p in (REPO / d).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                newest = max(newest, p.stat().st_mtime)
    for f in ("tests/harness/hostdriver.py", "tests/conftest.py"):
        p = REPO / f
        if p.exists():
            newest = max(newest, p.stat().st_mtime)
    for p in pathlib.Path(b["plugins"]).rglob("*.so") if with_plugins else ():
        newest = max(newest, p.stat().st_mtime)
    return newest


def parse_junit(path, prefix=("tests.host.", "tests.python.")):
    """Counts of the testcases under tests/host and tests/python (a `make test` file also
    has the integration tests), and when the run started."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    r = dict(passed=0, failed=0, skipped=0)
    started = None
    for s in suites:
        ts = s.get("timestamp")
        if ts:
            started = datetime.datetime.fromisoformat(ts).timestamp()
        for tc in s.iter("testcase"):
            if not tc.get("classname", "").startswith(prefix):
                continue
            if tc.find("failure") is not None or tc.find("error") is not None:
                r["failed"] += 1
            elif tc.find("skipped") is not None:
                r["skipped"] += 1
            else:
                r["passed"] += 1
    return r, started


def _current(xml, b, with_plugins):
    """The counts of junit file xml if it is from a run that started after
    everything the suite depends on last changed and ran a test; else
    None."""
    if not xml.exists():
        return None
    r, started = parse_junit(xml)
    if (started and started > _inputs_mtime(b, with_plugins=with_plugins)
            and r["passed"] + r["failed"]):
        return r
    return None


def unit_suite(args, b):
    xml = b["out"] / "unit.xml"
    reuse = args.reuse.get(b["ver"])
    # 22.05.8's run used build/plugins, the ones shown here; another
    # release's make test-X used its own build of the same sources
    own = b["ver"] == "22.05.8"
    r = _current(reuse, b, with_plugins=own) if reuse else None
    if r is not None:
        shown = reuse.relative_to(REPO) if reuse.is_relative_to(REPO) else reuse
        r.update(rc=0 if not r["failed"] else 1, unit_s=0.0,
                 note=f"{'make unit/test' if own else 'make test-' + b['ver']}'s results "
                      f"({shown})")
        return r
    # this script's own earlier run of the same suite on the same build
    # (.ci/run runs some releases early, beside the daemon tests)
    r = None if args.rerun else _current(xml, b, with_plugins=True)
    if r is not None:
        r.update(rc=0 if not r["failed"] else 1, unit_s=0.0,
                 note=f"an earlier make releases' results ({xml.relative_to(REPO)})")
        return r
    env = dict(os.environ, SLURM_SRC=str(b["src"]), SLURM_LIBDIR=str(b["libdir"]),
               SPM_PLUGIN_DIR=str(b["plugins"]), SPM_HOST_BUILD_DIR=str(b["host_dir"]))
    env.pop("SPM_HOST", None)
    env.pop("SPM_HOST_ASAN", None)
    env.pop("SPM_TEST_ASAN", None)
    if xml.exists():
        xml.unlink()
    t0 = time.monotonic()
    with open(b["out"] / "unit.log", "w") as f:
        rc = subprocess.run([str(REPO / args.venv / "bin" / "python"), "-m", "pytest",
                             "-ra", "-p", "no:cacheprovider", f"--junitxml={xml}",
                             "tests/host", "tests/python"],
                            stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env).returncode
    dt = time.monotonic() - t0
    if not xml.exists():
        return dict(passed=0, failed=0, skipped=0, rc=rc, unit_s=dt,
                    note=f"pytest exited {rc} with no results (see {b['out']}/unit.log)")
    r, _ = parse_junit(xml)
    r.update(rc=rc, unit_s=dt, note="" if rc == 0 else
             ("no tests collected (pytest exit 5)" if rc == 5 else f"pytest exit {rc}"))
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-src", required=True, help="configured 22.05.8 tree (make deps)")
    ap.add_argument("--tarballs", default=str(REPO.parent / "shared" / "slurm"))
    ap.add_argument("--venv", default=".venv")
    ap.add_argument("--jobs", type=int, default=2, help="unit suites at a time")
    ap.add_argument("--reuse", action="append", default=[], metavar="VER=FILE",
                    help="a junit file of an earlier whole run of that release's suite")
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--build-only", action="store_true",
                    help="build the releases (configure, libslurmfull, plugins, "
                         "host), run no suite, print no table")
    ap.add_argument("--rerun", action="store_true",
                    help="run each suite again even where an earlier run of "
                         "this script is current")
    args = ap.parse_args()
    args.reuse = dict(x.split("=", 1) for x in args.reuse)
    args.reuse = {v: pathlib.Path(f) for v, f in args.reuse.items()}
    releases = [(v, k) for v, k in RELEASES if not args.only or v in args.only]
    unknown = set(args.only) - {v for v, _ in RELEASES}
    if unknown:
        sys.exit(f"releases: unknown release(s) {', '.join(sorted(unknown))}")

    t_start = time.monotonic()
    rows = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {}
        for ver, kind in releases:
            log(f"{ver}: building")
            try:
                b = build_release(args, ver, kind)
            except Failed as e:
                log(f"{ver}: NOT BUILT: {e}")
                rows[ver] = dict(built=False, note=str(e))
                continue
            rows[ver] = dict(built=True, build_s=b["build_s"])
            if args.build_only:
                log(f"{ver}: built in {b['build_s']:.0f} s")
                continue
            log(f"{ver}: built in {b['build_s']:.0f} s; unit suite queued")
            futures[pool.submit(unit_suite, args, b)] = ver
        for fut in concurrent.futures.as_completed(futures):
            ver = futures[fut]
            try:
                r = fut.result()
            except Exception as e:      # report, never hide
                r = dict(passed=0, failed=0, skipped=0, rc=-1, unit_s=0.0,
                         note=f"suite crashed: {e!r}")
            rows[ver].update(r)
            log(f"{ver}: unit {r['passed']} passed, {r['failed']} failed, "
                f"{r['skipped']} skipped ({r['unit_s']:.0f} s) {r['note']}")

    if args.build_only:
        return 0 if all(r["built"] for r in rows.values()) else 1
    ok = True
    lines = [("release", "built", "unit passed", "failed", "skipped", "note")]
    for ver, _ in releases:
        r = rows[ver]
        if not r["built"]:
            ok = False
            lines.append((ver, "NO", "-", "-", "-", r["note"]))
            continue
        good = r["rc"] == 0 and r["failed"] == 0 and r["passed"] > 0
        ok &= good
        note = r["note"] or ""
        if r["passed"] == 0 and not note:
            note = "no test passed"
        lines.append((ver, "yes", str(r["passed"]), str(r["failed"]),
                      str(r["skipped"]), note if note or good else "FAILED"))
    widths = [max(len(l[i]) for l in lines) for i in range(5)]
    print()
    for i, l in enumerate(lines):
        print(" | ".join(c.ljust(w) for c, w in zip(l[:5], widths)) +
              (f" | {l[5]}" if l[5] else ""))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print(f"\nmake releases: {'OK' if ok else 'FAILED'} in {time.monotonic() - t_start:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
