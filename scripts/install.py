"""Install the built tree into Slurm's PluginDir, atomically and idempotently.

    python scripts/install.py BUILD_PLUGINS_DIR PLUGINDIR

Each file is written beside its destination and renamed over it, so a daemon
that has the old .so mapped keeps a valid mapping (writing in place would
crash it).  Files whose bytes are unchanged are left alone.
"""
import filecmp
import os
import shutil
import sys


def install_file(src: str, dst: str) -> bool:
    if os.path.isfile(dst) and filecmp.cmp(src, dst, shallow=False):
        return False
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    tmp = f"{dst}.tmp.{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755 if src.endswith(".so") else 0o644)
    os.replace(tmp, dst)
    return True


def main(build: str, dest: str) -> None:
    changed = 0
    for root, dirs, files in os.walk(build, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in ("cffi", "__pycache__"))
        for f in sorted(files):
            if f.endswith((".pyc", ".o")):
                continue
            src = os.path.join(root, f)
            dst = os.path.join(dest, os.path.relpath(src, build))
            if install_file(src, dst):
                changed += 1
                print(f"installed {dst}")
    print(f"install: {changed} file(s) updated in {dest}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
