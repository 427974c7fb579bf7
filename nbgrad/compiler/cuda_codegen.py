"""``nbgrad.compile`` on CUDA tensors: the fusion groups' kernels as ``cuda.jit`` kernels, and
how a program launches them on the CUDA target.

The statements are ``codegen._Writer``'s, the same text the CPU loops run (the op table's
forward and derivative expressions, renamed): only the loop around them differs. Each kernel
is a grid-stride loop over the group's flat index ``i``; a group that ends in a reduction
sums its terms per thread, then per block as a tree in shared memory, and writes one partial
sum per block; the CUDA target's own reduction (``reduce.sum``) then adds the partials and
scales them (the mean), on the device. The table's scalar functions are ``njit`` functions
that numba's CUDA target compiles as device functions, with ``ops/targets/cuda_scalar.py``'s
lowerings for the NumPy ufuncs it lacks (registered when the CUDA target is imported, before
any CUDA tensor exists), as the eager CUDA kernels do.

Nothing is read back to the host: the incoming gradient of a reduction reaches a backward
kernel as a one-element device array, and the joint forward-backward pass always scales its
gradients by the incoming gradient (one launch) instead of asking whether it is 1.

Generated modules go through ``ops._cache.load_module`` (a real file in the kernel cache, keyed
by a hash of the source) and their kernels are ``cuda.jit(cache=True)``: numba-cuda then keeps
the compiled code beside that file, per GPU architecture, so a new process skips compiling
(the simulator accepts the flag and runs the Python source).
"""
import numpy as np

from nbgrad.ops.targets import cuda_kernels as hand
from nbgrad.ops.targets import target_for

__all__ = ["kernel_source", "RUNNER", "THREADS"]

THREADS = hand.THREADS                 # threads per block (a power of two: the reduction's tree)
MAX_BLOCKS = 1024                      # a reducing kernel's grid: partial sums to add afterwards


def kernel_source(kernel):
    """The CUDA kernel of ``kernel`` (a ``codegen._Kernel``): its body in a grid-stride loop."""
    params, loads = [], []
    for kind, _, name in kernel.params:
        if kind == "scalar":                   # a one-element device array, read once
            params.append(name + "_")
            loads.append(f"    {name} = {name}_[0]")
        else:
            params.append(name)
    if kernel.reduces:
        params.append("partials")
    lines = ["@cuda.jit(cache=True)", f"def {kernel.name}_c({', '.join(params)}):", *loads,
             "    i = cuda.grid(1)", "    step = cuda.gridsize(1)"]
    if kernel.reduces:
        lines.append("    acc = 0.0")
    lines.append(f"    while i < {kernel.group.size}:")
    lines += ["        " + line for line in kernel.body]
    if kernel.reduces:                         # the value the loop sums (a name of the body's)
        lines.append(f"        acc += {kernel.reduces}")
    lines.append("        i += step")
    if kernel.reduces:
        lines += ["    t = cuda.threadIdx.x",
                  "    sh = cuda.shared.array(THREADS, float64)",
                  "    sh[t] = acc",
                  "    cuda.syncthreads()",
                  "    s = THREADS // 2",
                  "    while s > 0:",
                  "        if t < s:",
                  "            sh[t] += sh[t + s]",
                  "        cuda.syncthreads()",
                  "        s //= 2",
                  "    if t == 0:",
                  "        partials[cuda.blockIdx.x] = sh[0]"]
    return "\n".join(lines) + "\n"


def _buffer(arg):
    """A kernel argument: a (flat, C-contiguous) ``DeviceArray`` as the device buffer from its
    offset (a view, not a copy); numbers as they are. A host array is refused: numba would copy
    it to the device at each launch (and the simulator would take it silently)."""
    if not hasattr(arg, "buf"):
        if isinstance(arg, np.ndarray):
            raise TypeError("nbgrad.compile: a host array reached a CUDA kernel")
        return arg
    if arg.offset == 0:
        return arg.buf
    return arg.buf[arg.offset:arg.offset + max(arg.size, 1)]


class _CudaRunner:
    """How a program writes and launches its kernels on the CUDA target (``Program.runner``)."""
    stem = "compiled_cuda"
    header = f"import math\nfrom math import inf, nan\nimport numpy as np\nfrom numba import cuda, float64\n\nTHREADS = {THREADS}\n"

    @property
    def target(self):
        return target_for("cuda")

    @staticmethod
    def suffix(parallel):
        return "c"

    def launch(self, kernel, group, parallel, args, reduces=False):
        """Run ``kernel`` over ``group``'s elements; a reducing one returns its partial sums
        (a float64 array of the CUDA target, one per block)."""
        blocks = hand.blocks_for(group.size, THREADS)
        args = [_buffer(a) for a in args]
        if reduces:
            blocks = min(blocks, MAX_BLOCKS)
            partials = self.target.empty((blocks,), np.float64)
            kernel[blocks, THREADS](*args, partials.buf)
            return partials
        kernel[blocks, THREADS](*args)
        return None

    def total(self, partials, group):
        """The terminal reduction's value from the partial sums, on the device (of a group of
        no elements: 0, or NaN for a mean)."""
        T, t = self.target, group.terminal
        dtype = t.dtype.numpy
        if partials is None:
            return T.full(t.shape, float("nan") if t.params["mean"] else 0.0, dtype)
        return T.reshape(T.reduce.sum(partials, (0,), dtype, t.params["scale"]), t.shape)

    @staticmethod
    def seed(grad):
        """Never read from the device: the joint pass's gradients are always scaled."""
        return None

    def scalar(self, array, dtype):
        """A backward kernel's incoming gradient of a terminal reduction: one element on the device."""
        T = self.target
        return T.number(0.0, dtype.numpy) if array is None else T.contiguous(array)


RUNNER = _CudaRunner()
