"""Install the built tree into Slurm's PluginDir, atomically and idempotently.

    python scripts/install.py BUILD_PLUGINS_DIR PLUGINDIR

Each file is written beside its destination and renamed over it, so a daemon
that has the old .so mapped keeps a valid mapping (writing in place would
crash it).  Files whose bytes, mode and owner are already right are left
alone, so a second run changes nothing.

The installed tree depends on nothing in the build tree: the build's
symlinks (build/plugins/slurmpy/python/slurmpy_plugins points into the
checkout) are copied as real files, every file and directory we create is
root-owned (when run as root) and not writable by group or others, and the
result is checked for symlinks before we return.  Under PLUGINDIR/slurmpy/,
which is ours alone, files the build no longer has (a module removed from
the package) are deleted, so a stale module can never be imported.

The package's modules are byte-compiled beside them (``__pycache__/*.pyc``,
hash-checked: Python verifies each against its source's hash at import, so
a changed or copied file can never run stale bytecode), root-owned like the
sources: the daemons never write bytecode, and without these every Python
start (each slurmstepd with a SPANK hook) compiled the package anew.  Run
this script with the interpreter the daemons embed (the venv's, made from
it): the files carry its cache tag.
"""
import filecmp
import importlib.util
import os
import py_compile
import shutil
import stat
import sys

OURS = "slurmpy"                    # PLUGINDIR/slurmpy/ holds only our files
SKIP_DIRS = ("cffi", "__pycache__")  # cffi: build_ffi.py's compiler scratch
SKIP_SUFFIXES = (".pyc", ".o", ".tmp")


def _owner_ok(st: os.stat_result) -> bool:
    return os.geteuid() != 0 or (st.st_uid == 0 and st.st_gid == 0)


def _mode(src: str) -> int:
    return 0o755 if src.endswith(".so") else 0o644


def _up_to_date(src: str, dst: str) -> bool:
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        return False
    return (stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == _mode(src)
            and _owner_ok(st) and filecmp.cmp(src, dst, shallow=False))


def make_dir(path: str, dest: str) -> None:
    """Make sure path is a directory.  A new one is 0755 (root-owned when run
    as root).  Inside PLUGINDIR/slurmpy, which is ours, an existing one gets
    its mode/owner fixed (a group-writable directory would let others swap
    files) and a symlink in its place (an old install pointing into a
    checkout) is replaced by a real directory.  PLUGINDIR and its parents are
    Slurm's or the site's: they are only created if missing."""
    ours = os.path.join(dest, OURS)
    inside = os.path.commonpath([path, ours]) == ours
    if inside and path != ours:
        make_dir(os.path.dirname(path), dest)    # a symlinked parent goes first
    if inside and os.path.islink(path):
        print(f"replacing symlink {path} -> {os.readlink(path)} by a directory")
        os.unlink(path)
    if not os.path.isdir(path):
        if os.path.lexists(path):
            sys.exit(f"install: {path} is in the way (not a directory); remove it")
        make_dir(os.path.dirname(path), dest)
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)
        if os.geteuid() == 0:
            os.chown(path, 0, 0)
    if not inside:
        return
    st = os.lstat(path)
    if stat.S_IMODE(st.st_mode) & 0o022:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
    if not _owner_ok(st):
        os.chown(path, 0, 0)


def install_file(src: str, dst: str, dest: str) -> bool:
    make_dir(os.path.dirname(dst), dest)
    if _up_to_date(src, dst):
        return False
    tmp = f"{dst}.tmp.{os.getpid()}"
    shutil.copyfile(src, tmp)       # follows symlinks: a real file
    if os.geteuid() == 0:
        os.chown(tmp, 0, 0)
    os.chmod(tmp, _mode(src))
    os.replace(tmp, dst)
    return True


def _pyc_current(py: str, pyc: str) -> bool:
    """pyc is a hash-checked .pyc of py's current bytes."""
    try:
        with open(pyc, "rb") as f:
            head = f.read(16)
        with open(py, "rb") as f:
            source = f.read()
    except FileNotFoundError:
        return False
    return (len(head) == 16 and head[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(head[4:8], "little") == 0b11     # checked hash
            and head[8:16] == importlib.util.source_hash(source))


def compile_file(py: str, dest: str, shown: str) -> bool:
    """Byte-compile py beside it (atomically, root-owned 0644), its code
    named `shown` (the path it will have, under --destdir); False when
    already current."""
    pyc = importlib.util.cache_from_source(py)
    if _pyc_current(py, pyc):
        return False
    make_dir(os.path.dirname(pyc), dest)
    tmp = f"{pyc}.tmp.{os.getpid()}"
    py_compile.compile(py, cfile=tmp, dfile=shown, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    if os.geteuid() == 0:
        os.chown(tmp, 0, 0)
    os.chmod(tmp, 0o644)
    os.replace(tmp, pyc)
    return True


def sources(build: str):
    for root, dirs, files in os.walk(build, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for f in sorted(files):
            if f.startswith(".") or f.endswith(SKIP_SUFFIXES):
                continue          # .staged and other build markers
            yield os.path.join(root, f)


def main(build: str, dest: str, destdir: str = "") -> None:
    """Install build into destdir + dest (destdir: a staging root, as a
    package build uses; the files are named as under dest)."""
    build = os.path.abspath(build)
    final = os.path.abspath(dest)
    dest = os.path.abspath(destdir) + final if destdir else final
    make_dir(dest, dest)
    changed = removed = 0
    wanted = set()
    for src in sources(build):
        rel = os.path.relpath(src, build)
        dst = os.path.join(dest, rel)
        wanted.add(rel)
        if install_file(src, dst, dest):
            changed += 1
            print(f"installed {dst}")
    ours = os.path.join(dest, OURS)
    pycs = set()
    for rel in sorted(wanted):
        if rel.startswith(OURS + os.sep) and rel.endswith(".py"):
            py = os.path.join(dest, rel)
            pycs.add(os.path.relpath(importlib.util.cache_from_source(py), dest))
            if compile_file(py, dest, os.path.join(final, rel)):
                changed += 1
    wanted |= pycs
    for root, dirs, files in os.walk(ours):
        for f in files:
            path = os.path.join(root, f)
            if os.path.relpath(path, dest) not in wanted:
                os.unlink(path)
                removed += 1
                print(f"removed {path}")
        for d in dirs:
            path = os.path.join(root, d)
            if d == "__pycache__" and not os.listdir(path):
                os.rmdir(path)
    problems = []
    for root, dirs, files in os.walk(ours):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{path} is a symlink")
            elif st.st_mode & 0o022 or not _owner_ok(st):
                problems.append(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}, "
                                f"owner {st.st_uid}:{st.st_gid}")
    if problems:
        sys.exit("install: the installed tree is not self-contained and root-owned:\n  "
                 + "\n  ".join(problems))
    print(f"install: {changed} file(s) updated, {removed} removed in {dest}")


if __name__ == "__main__":
    args = sys.argv[1:]
    stage = ""
    if len(args) == 4 and args[0] == "--destdir":
        stage, args = args[1], args[2:]
    if len(args) != 2:
        sys.exit("usage: install.py [--destdir STAGE] BUILD_PLUGINS_DIR PLUGINDIR")
    main(args[0], args[1], stage)
