"""``python -m nbgrad info`` and ``python -m nbgrad precompile``."""
import argparse
import os
import sys


def _dir_size(path):
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
                files += 1
            except OSError:
                pass
    return total, files


def info():
    """Versions, threading, the kernel cache, and whether CUDA is there."""
    import numba
    import numpy

    import nbgrad
    from nbgrad.ops import cache_dir
    from nbgrad.ops.elementwise import PARALLEL_MIN
    cache = cache_dir()
    size, files = _dir_size(cache)
    try:
        from numba import cuda
        has_cuda = cuda.is_available()
    except Exception:            # numba-cuda missing or broken driver: not available
        has_cuda = False
    layer = numba.config.THREADING_LAYER
    rows = [
        ("nbgrad", nbgrad.__version__),
        ("python", sys.version.split()[0]),
        ("numba", numba.__version__),
        ("numpy", numpy.__version__),
        ("threading layer", f"{layer} (requested); parallel kernels take turns across Python threads"),
        ("threads", str(numba.get_num_threads())),
        ("parallel from", f"{PARALLEL_MIN} elements"),
        ("kernel cache", f"{cache}  (set NBGRAD_CACHE_DIR to move it)"),
        ("cache size", f"{size / 2**20:.1f} MiB in {files} files"),
        ("CUDA available", "yes" if has_cuda else "no"),
    ]
    if has_cuda:
        rows += _cuda_rows()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _cuda_rows():
    """The CUDA target's implementation and device (name, memory, compute capability)."""
    from nbgrad.ops.targets import target_for
    target = target_for("cuda")
    rows = [("CUDA implementation", target.implementation())]
    try:
        from numba import cuda
        dev = cuda.get_current_device()
        free, total = cuda.current_context().get_memory_info()
        rows += [("CUDA device", dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)),
                 ("CUDA memory", f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)"),
                 ("compute capability", ".".join(map(str, dev.compute_capability)))]
    except Exception:            # the simulator has no device properties
        rows.append(("CUDA device", target.device_name()))
    return rows


def precompile(quiet=False):
    """Compile every kernel for the common dtypes into the on-disk cache."""
    from nbgrad._precompile import workloads
    jobs = workloads()
    for i, (name, job) in enumerate(jobs, 1):
        job()
        if not quiet:
            done = int(30 * i / len(jobs))
            print(f"\r[{'#' * done}{'.' * (30 - done)}] {i}/{len(jobs)} {name:<28}", end="", flush=True)
    if not quiet:
        print()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nbgrad", description="nbgrad tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help=info.__doc__)
    pre = sub.add_parser("precompile", help=precompile.__doc__)
    pre.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "info":
        info()
    else:
        precompile(args.quiet)


if __name__ == "__main__":
    main()
