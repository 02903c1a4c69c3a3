#!/usr/bin/env python3
"""What reading cgroup v2 files costs against the same files on tmpfs.

bench/run's (f) times `ocusers status` the cgroup way with each unit's
cgroup files laid out on tmpfs, because no container on these machines has
cgroup v2 controllers. This measures the difference that leaves out: seven
files read in each of up to 200 directories of the host's real cgroup v2
hierarchy (the unified one of a hybrid host; run it while bench/run's
container is up for 200 of them), then the same from copies on tmpfs.
Run as any user: `python3 bench/cgroup_reads.py`.
"""
import glob
import os
import shutil
import tempfile
import time

ROOTS = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
FILES = ["cpu.stat", "cgroup.stat", "cgroup.max.depth", "cgroup.max.descendants",
         "cgroup.events", "cgroup.type", "cgroup.freeze"]


def read_all(dirs):
    start = time.perf_counter()
    for d in dirs:
        for f in FILES:
            try:
                with open(d + f) as fh:
                    fh.read()
            except OSError:
                pass
    return (time.perf_counter() - start) * 1000


def main():
    root = next(r for r in ROOTS if os.path.exists(r + "/cgroup.procs"))
    dirs = [d for d in glob.glob(root + "/**/", recursive=True)
            if os.path.exists(d + "cpu.stat")][:200]
    tmp = tempfile.mkdtemp(dir="/dev/shm")
    try:
        copies = []
        for i, d in enumerate(dirs):
            c = f"{tmp}/{i}/"
            os.makedirs(c)
            copies.append(c)
            for f in FILES:
                try:
                    text = open(d + f).read()
                except OSError:
                    text = "0\n"
                with open(c + f, "w") as fh:
                    fh.write(text)
        for _ in range(3):
            read_all(dirs)
            read_all(copies)
        kern = sorted(read_all(dirs) for _ in range(21))[10]
        tmpfs = sorted(read_all(copies) for _ in range(21))[10]
        n = len(dirs) * len(FILES)
        print(f"{len(dirs)} cgroups x {len(FILES)} files under {root}: "
              f"{kern:.1f} ms from cgroupfs, {tmpfs:.1f} ms from tmpfs (medians of 21); "
              f"{(kern - tmpfs) * 1000 / n:.1f} us more a read")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
