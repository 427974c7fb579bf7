"""What ``python -m nbgrad precompile`` runs: every op family, forward and backward, in
float32 and float64, on a small input (serial loops) and a large one (parallel loops),
contiguous and strided, so that each kernel variant they use lands in the on-disk cache.

Compiling by running the public ops, rather than from a list of signatures, compiles
exactly the variants that programs meet, and cannot drift from the code.
"""
import numpy as np

SMALL, LARGE = (4, 5), (512, 640)      # 20 and 327,680 elements: either side of PARALLEL_MIN (2**18)


def _inputs(nbgrad, dtype, shape):
    rng = np.random.default_rng(0)
    x = nbgrad.tensor(rng.random(shape, dtype=dtype.numpy) + 0.5, requires_grad=True)
    y = nbgrad.tensor(rng.random(shape, dtype=dtype.numpy) + 0.5, requires_grad=True)
    return x, y


def _pointwise(nbgrad, x, y):
    """Every op of the op table with a function (its forward and each gradient's fused kernel),
    then the layouts: a broadcast operand, transposed operands, a number."""
    from nbgrad.functional.pointwise import RUN
    from nbgrad.ops.table import TABLE
    for name, record in TABLE.items():
        if name in RUN:
            operands = [x > y if arg == "condition" else (x, y, y)[k] for k, arg in enumerate(record.inputs)]
            out = RUN[name](*operands)
            if out.requires_grad:
                out.sum().backward()
    bias = y[0]                          # broadcast (strided) operand
    for out in (x + bias, x * bias, x.t() * y.t(), x * 3, 3 / x, 10 - x, x ** 2, 2 ** x):
        out.sum().backward()
    [op(x, y) for op in (lambda a, b: a == b, lambda a, b: a < b, lambda a, b: a >= b)]


def _reductions(nbgrad, x, y):
    for out in (x.sum(), x.sum(0), x.sum(1), x.mean(1), x.max(), x.max(1)[0], x.amax(0), x.var(1),
                x.std(0), x.logsumexp(1), x.softmax(1), x.log_softmax(1), x.t().sum(1), x.prod(1)):
        out.sum().backward()
    x.argmax(1)


def _linalg_shape_index(nbgrad, x, y):
    n = x.shape[1]
    outs = [x @ y.t(), x.t() @ y, x[:, :3] @ x[:3], (x @ y[0]), x.reshape(-1), x.view(-1, 1),
            x.t().reshape(-1), nbgrad.cat([x, y]), nbgrad.stack([x, y]), x.unsqueeze(0).expand(2, *x.shape),
            x[1:, ::2], x[[0, 1, 1]], x[x > 1], x.gather(1, nbgrad.zeros(x.shape[0], 1, dtype=nbgrad.int64)),
            x.permute(1, 0).contiguous(), x.flip(0)]
    for out in outs:
        out.sum().backward()
    z = x.detach().clone()
    z[0] = 1.0
    z[z > 1] = 0.0
    z[:, [0, n - 1]] = 2.0


def _nn(nbgrad, x, y):
    F = nbgrad.nn.functional
    target = nbgrad.zeros(x.shape[0], dtype=nbgrad.int64)
    for loss in (F.cross_entropy(x, target), F.mse_loss(x, y), F.nll_loss(x.log_softmax(1), target),
                 F.embedding(target, x).sum()):
        loss.backward()
    with nbgrad.no_grad():
        x.add_(y.grad, alpha=-0.1)
        x.mul_(0.9)


def _optim(nbgrad, x, y):
    """One step of each optimizer family's kernel (with its optional states in use)."""
    x.grad = y.detach()
    O = nbgrad.optim
    for opt in (O.SGD([x], lr=1e-3, momentum=0.9), O.Adam([x], amsgrad=True), O.NAdam([x]), O.RAdam([x]),
                O.Adamax([x]), O.RMSprop([x], momentum=0.9, centered=True), O.Adagrad([x]), O.Adadelta([x])):
        opt.step()


def _tensor_functions(nbgrad, x, y):
    outs = [x.sort(1).values, x.sort(0, descending=True).values, x.topk(2, 1).values, x.cumsum(1), x.cumprod(1),
            x.cummax(1).values, x.median(1).values, x.mode(0).values, nbgrad.linalg.vector_norm(x, 3, 1)]
    for out in outs:
        out.sum().backward()
    x.detach().unique(return_inverse=True, return_counts=True), x.detach().unique(dim=0), x.isnan(), x.histc(4)


def _layers(nbgrad, x, y):
    """Convolution, pooling and normalisation (the large input's image runs their parallel loops)."""
    F = nbgrad.nn.functional
    w = nbgrad.ones(4, 1, 3, 3, dtype=x.dtype, requires_grad=True)
    h = F.conv2d(x.reshape(1, 1, *x.shape), w, w[:, 0, 0, 0], padding=1)
    outs = [F.max_pool2d(h, 2, ceil_mode=True), F.avg_pool2d(h, 2, ceil_mode=True), F.adaptive_avg_pool2d(h, 2),
            F.batch_norm(h, None, None, training=True), F.layer_norm(h, h.shape[-1:]), F.group_norm(h, 2),
            F.conv1d(x.unsqueeze(0), nbgrad.ones(2, x.shape[0], 3, dtype=x.dtype, requires_grad=True))]
    sum(out.sum() for out in outs).backward()


FAMILIES = [("pointwise", _pointwise), ("reductions", _reductions),
            ("matmul, shapes, indexing", _linalg_shape_index), ("nn", _nn), ("optim", _optim),
            ("sorting, scans", _tensor_functions), ("conv, pool, norm", _layers)]


def workloads():
    """(name, job) pairs, one per family × dtype × size."""
    import nbgrad
    jobs = []
    for dtype in (nbgrad.float32, nbgrad.float64):
        for shape in (SMALL, LARGE):
            for name, family in FAMILIES:
                label = f"{name} {dtype.name} {'large' if shape == LARGE else 'small'}"
                jobs.append((label, lambda family=family, dtype=dtype, shape=shape:
                             family(nbgrad, *_inputs(nbgrad, dtype, shape))))
    return jobs
