"""The CUDA kernels of the layer families: convolution (im2col/col2im), pooling,
normalisation and embedding. ``cuda_layers.py`` allocates and launches them.

* conv: ``im2col`` one thread per ``cols`` element (padding read as zeros by a bounds
  check); ``col2im`` one thread per input element, which *gathers* the ``cols`` entries
  that map to it (no two threads write one element, so no atomics and a fixed order).
* pool: one thread per output for max and average; the max backward adds each output
  gradient at its saved index with atomic adds (windows may overlap); the average backward
  is a gather per input element over the windows that contain it.
* norm: one block per batch-norm channel or layer/group-norm row: the statistics (shifted by
  the set's first element, in float64) as shared-memory tree sums, then each thread writes
  its share; the backward likewise, and the row norms' parameter gradients as one block per
  parameter summing over its rows.
* embedding: one thread per output element (gather), atomic adds for the scatter (repeated
  indices), one thread per marked row for ``max_norm``.

Every index read from an array is checked before it is followed: the kernels skip it and
record the first bad position with an atomic minimum (the caller reads that one flag back
and raises PyTorch's error). Arrays are flat device buffers (plus an element offset and
element strides, tuples passed by value, where they may be views).
"""
import math

from numba import cuda, float64, int64

from .cuda_kernels import THREADS

__all__ = ["im2col", "col2im", "max_pool", "max_scatter", "max_gather", "avg_pool", "avg_pool_backward",
           "batch_norm", "batch_norm_backward", "row_norm", "row_norm_backward", "row_norm_params", "count_rows",
           "embedding_gather", "embedding_scatter", "mark_rows", "renorm_rows"]


@cuda.jit(device=True)
def _block_sum(sh, t, v):
    """The sum of ``v`` over the block's ``THREADS`` threads (every thread must call it)."""
    sh[t] = v
    cuda.syncthreads()
    s = THREADS // 2
    while s > 0:
        if t < s:
            sh[t] += sh[t + s]
        cuda.syncthreads()
        s //= 2
    total = sh[0]
    cuda.syncthreads()
    return total


# -- convolution ------------------------------------------------------------------------------
@cuda.jit
def im2col(cols, x, xo, xs, n_, c_, h_, w_, geo, size):
    """``cols[(c, i, j), (n, oh, ow)] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]`` (0 outside)."""
    u = cuda.grid(1)
    if u >= size:
        return
    kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw = geo
    L = oh_ * ow_
    ncol = n_ * L
    r = u // ncol
    col = u - r * ncol
    c = r // (kh * kw)
    i = (r // kw) % kh
    j = r % kw
    n = col // L
    oh = (col % L) // ow_
    ow = col % ow_
    ih = oh * sh - ph + i * dh
    iw = ow * sw - pw + j * dw
    if 0 <= ih < h_ and 0 <= iw < w_ and c < c_:
        cols[u] = x[xo + n * xs[0] + c * xs[1] + ih * xs[2] + iw * xs[3]]
    else:
        cols[u] = 0


@cuda.jit
def col2im(dx, cols, n_, c_, h_, w_, geo, size):
    """``dx[n, c, ih, iw]`` = the sum of the ``cols`` entries that ``im2col`` read from there."""
    u = cuda.grid(1)
    if u >= size:
        return
    kh, kw, oh_, ow_, sh, sw, ph, pw, dh, dw = geo
    L = oh_ * ow_
    ncol = n_ * L
    iw = u % w_
    ih = (u // w_) % h_
    c = (u // (w_ * h_)) % c_
    n = u // (w_ * h_ * c_)
    acc = float64(0)
    for i in range(kh):
        a = ih + ph - i * dh
        if a >= 0 and a % sh == 0 and a // sh < oh_:
            oh = a // sh
            for j in range(kw):
                b = iw + pw - j * dw
                if b >= 0 and b % sw == 0 and b // sw < ow_:
                    acc += cols[((c * kh + i) * kw + j) * ncol + n * L + oh * ow_ + b // sw]
    dx[u] = acc


# -- pooling ----------------------------------------------------------------------------------
@cuda.jit
def max_pool(out, idx, x, xo, xs, h_, w_, oh_, ow_, win, size):
    """The maximum of each window (a NaN wins) and its flat index in the plane; padding is
    never a candidate (windows are clipped), as on the CPU."""
    u = cuda.grid(1)
    if u >= size:
        return
    kh, kw, sh, sw, ph, pw, dh, dw = win
    ow = u % ow_
    oh = (u // ow_) % oh_
    p = u // (ow_ * oh_)
    h0 = oh * sh - ph
    while h0 < 0:
        h0 += dh
    h1 = min(oh * sh - ph + (kh - 1) * dh + 1, h_)
    w0 = ow * sw - pw
    while w0 < 0:
        w0 += dw
    w1 = min(ow * sw - pw + (kw - 1) * dw + 1, w_)
    best = -math.inf
    at = h0 * w_ + w0
    for ih in range(h0, h1, dh):
        for iw in range(w0, w1, dw):
            v = float64(x[xo + p * xs[0] + ih * xs[1] + iw * xs[2]])
            if v > best or v != v:
                best = v
                at = ih * w_ + iw
    out[u] = best
    idx[u] = at


@cuda.jit
def max_scatter(dx, go, idx, hw, ohw, size, bad):
    """``dx[p, idx[p, o]] += go[p, o]`` (atomic: windows may share their maximum); ``dx`` is
    zero-filled, an index outside the plane is recorded in ``bad`` and not followed."""
    u = cuda.grid(1)
    if u >= size:
        return
    k = idx[u]
    if k < 0 or k >= hw:
        cuda.atomic.min(bad, 0, int64(u))
        return
    cuda.atomic.add(dx, (u // ohw) * hw + k, go[u])


@cuda.jit
def max_gather(out, g, idx, hw, ohw, size, bad):
    """``out[p, o] = g[p, idx[p, o]]``: the backward of ``max_scatter``."""
    u = cuda.grid(1)
    if u >= size:
        return
    k = idx[u]
    if k < 0 or k >= hw:
        cuda.atomic.min(bad, 0, int64(u))
        out[u] = 0
        return
    out[u] = g[(u // ohw) * hw + k]


@cuda.jit
def avg_pool(out, x, xo, xs, h_, w_, oh_, ow_, hs, he, hd, ws, we, wd, size):
    """The sum of each explicit window (clipped to the plane) over its divisor ``hd * wd``."""
    u = cuda.grid(1)
    if u >= size:
        return
    ow = u % ow_
    oh = (u // ow_) % oh_
    p = u // (ow_ * oh_)
    s = float64(0)
    for ih in range(max(hs[oh], 0), min(he[oh], h_)):
        for iw in range(max(ws[ow], 0), min(we[ow], w_)):
            s += x[xo + p * xs[0] + ih * xs[1] + iw * xs[2]]
    out[u] = s / (hd[oh] * wd[ow])


@cuda.jit
def avg_pool_backward(dx, go, h_, w_, oh_, ow_, hs, he, hd, ws, we, wd, size):
    """``dx[p, ih, iw]`` = the sum of ``go / divisor`` over the windows containing it."""
    u = cuda.grid(1)
    if u >= size:
        return
    iw = u % w_
    ih = (u // w_) % h_
    p = u // (w_ * h_)
    acc = float64(0)
    for oh in range(oh_):
        if max(hs[oh], 0) <= ih < min(he[oh], h_):
            for ow in range(ow_):
                if max(ws[ow], 0) <= iw < min(we[ow], w_):
                    acc += go[(p * oh_ + oh) * ow_ + ow] / (hd[oh] * wd[ow])
    dx[u] = acc


# -- normalisation ----------------------------------------------------------------------------
@cuda.jit
def batch_norm(out, x, xo, xs, n_, l_, mean, invstd, var, w, b, has_w, has_b, train, eps, rm, rv, track,
               momentum, unbias):
    """One block per channel ``c`` of ``x`` (N, C, L). Training: the channel's mean, biased
    variance and 1/std (and the running statistics updated in place when ``track``);
    evaluation: the running ones. Then ``out = x * scale + shift``."""
    c = cuda.blockIdx.x
    t = cuda.threadIdx.x
    sh = cuda.shared.array(THREADS, float64)
    m = n_ * l_
    if train:
        k = float64(x[xo + c * xs[1]])
        s1 = float64(0)
        s2 = float64(0)
        e = t
        while e < m:
            d = float64(x[xo + (e // l_) * xs[0] + c * xs[1] + (e % l_) * xs[2]]) - k
            s1 += d
            s2 += d * d
            e += THREADS
        s1 = _block_sum(sh, t, s1)
        s2 = _block_sum(sh, t, s2)
        mu = s1 / m
        v = max(s2 / m - mu * mu, 0.0)
        mu += k
        istd = 1.0 / math.sqrt(v + eps)
        if t == 0:
            mean[c] = mu
            var[c] = v
            invstd[c] = istd
            if track:
                rm[c] = rm[c] * (1 - momentum) + momentum * mu
                rv[c] = rv[c] * (1 - momentum) + momentum * v * unbias
    else:
        mu = float64(rm[c])
        istd = 1.0 / math.sqrt(float64(rv[c]) + eps)
        if t == 0:
            mean[c] = mu
            invstd[c] = istd
    scale = istd * (float64(w[c]) if has_w else 1.0)
    shift = (float64(b[c]) if has_b else 0.0) - mu * scale
    e = t
    while e < m:
        n = e // l_
        q = e % l_
        out[(n * cuda.gridDim.x + c) * l_ + q] = x[xo + n * xs[0] + c * xs[1] + q * xs[2]] * scale + shift
        e += THREADS


@cuda.jit
def batch_norm_backward(dx, dw, db, go, x, n_, l_, mean, invstd, w, has_w, train, need_dx):
    """One block per channel of contiguous ``go`` and ``x`` (N, C, L): ``db = sum(go)``,
    ``dw = sum(go * xhat)``, and ``dx`` in the two-reduction form."""
    c = cuda.blockIdx.x
    t = cuda.threadIdx.x
    c_ = cuda.gridDim.x
    sh = cuda.shared.array(THREADS, float64)
    m = n_ * l_
    mu = mean[c]
    istd = invstd[c]
    sdy = float64(0)
    sdyx = float64(0)
    e = t
    while e < m:
        p = ((e // l_) * c_ + c) * l_ + e % l_
        g = float64(go[p])
        sdy += g
        sdyx += g * (x[p] - mu)
        e += THREADS
    sdy = _block_sum(sh, t, sdy)
    sdyx = _block_sum(sh, t, sdyx)
    if t == 0:
        db[c] = sdy
        dw[c] = sdyx * istd
    if need_dx:
        wc = float64(w[c]) if has_w else 1.0
        a = sdy / m if train else 0.0
        k = sdyx / m * istd * istd if train else 0.0
        e = t
        while e < m:
            p = ((e // l_) * c_ + c) * l_ + e % l_
            dx[p] = (go[p] - a - (x[p] - mu) * k) * istd * wc
            e += THREADS


@cuda.jit
def row_norm(out, x, xo, xs, m_, mean, invstd, w, b, has_w, has_b, groups, cg, l_, eps):
    """One block per row of ``x`` (R, M): its mean and 1/std, then the normalised row scaled
    and shifted by the parameters ``a = (r % groups) * cg + m // l_``."""
    r = cuda.blockIdx.x
    t = cuda.threadIdx.x
    sh = cuda.shared.array(THREADS, float64)
    base = xo + r * xs[0]
    k = float64(x[base])
    s1 = float64(0)
    s2 = float64(0)
    e = t
    while e < m_:
        d = float64(x[base + e * xs[1]]) - k
        s1 += d
        s2 += d * d
        e += THREADS
    s1 = _block_sum(sh, t, s1)
    s2 = _block_sum(sh, t, s2)
    mu = s1 / m_
    v = max(s2 / m_ - mu * mu, 0.0)
    mu += k
    istd = 1.0 / math.sqrt(v + eps)
    if t == 0:
        mean[r] = mu
        invstd[r] = istd
    g0 = (r % groups) * cg
    e = t
    while e < m_:
        a = g0 + e // l_
        y = (x[base + e * xs[1]] - mu) * istd
        if has_w:
            y *= w[a]
        if has_b:
            y += b[a]
        out[r * m_ + e] = y
        e += THREADS


@cuda.jit
def row_norm_backward(dx, go, x, m_, mean, invstd, w, has_w, groups, cg, l_):
    """One block per row of contiguous ``go`` and ``x`` (R, M): ``dx`` in the two-reduction form."""
    r = cuda.blockIdx.x
    t = cuda.threadIdx.x
    sh = cuda.shared.array(THREADS, float64)
    mu = mean[r]
    istd = invstd[r]
    g0 = (r % groups) * cg
    s1 = float64(0)
    s2 = float64(0)
    e = t
    while e < m_:
        p = r * m_ + e
        g = go[p] * (float64(w[g0 + e // l_]) if has_w else 1.0)
        s1 += g
        s2 += g * (x[p] - mu) * istd
        e += THREADS
    s1 = _block_sum(sh, t, s1) / m_
    s2 = _block_sum(sh, t, s2) / m_
    e = t
    while e < m_:
        p = r * m_ + e
        g = go[p] * (float64(w[g0 + e // l_]) if has_w else 1.0)
        dx[p] = (g - s1 - (x[p] - mu) * istd * s2) * istd
        e += THREADS


@cuda.jit
def row_norm_params(dw, db, go, x, rows, m_, mean, invstd, groups, cg, l_):
    """One block per parameter ``a``: ``dw[a] = sum(go * xhat)``, ``db[a] = sum(go)`` over its
    elements (rows ``r % groups == a // cg``, columns ``[(a % cg) * l_, (a % cg + 1) * l_)``)."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    sh = cuda.shared.array(THREADS, float64)
    g = a // cg
    col0 = (a % cg) * l_
    nr = (rows - g + groups - 1) // groups
    sw = float64(0)
    sb = float64(0)
    e = t
    while e < nr * l_:
        r = g + (e // l_) * groups
        p = r * m_ + col0 + e % l_
        v = float64(go[p])
        sw += v * (x[p] - mean[r]) * invstd[r]
        sb += v
        e += THREADS
    sw = _block_sum(sh, t, sw)
    sb = _block_sum(sh, t, sb)
    if t == 0:
        dw[a] = sw
        db[a] = sb


# -- embedding --------------------------------------------------------------------------------
@cuda.jit
def count_rows(idx, counts, n):
    """``counts[r]`` += the number of times row ``r`` is named (indices already checked)."""
    i = cuda.grid(1)
    if i < idx.shape[0]:
        r = idx[i]
        if 0 <= r < n:
            cuda.atomic.add(counts, r, 1)


@cuda.jit
def embedding_gather(out, w, wo, ws, idx, n, d, skip, scale, counts, size):
    """``out[i, j] = w[idx[i], j]`` (over the row's count with ``scale``), 0 where ``idx[i] == skip``."""
    u = cuda.grid(1)
    if u >= size:
        return
    i = u // d
    j = u % d
    r = idx[i]
    if r == skip or r < 0 or r >= n:
        out[u] = 0
    elif scale:
        out[u] = w[wo + r * ws[0] + j * ws[1]] * (1.0 / counts[r])
    else:
        out[u] = w[wo + r * ws[0] + j * ws[1]]


@cuda.jit
def embedding_scatter(out, g, idx, n, d, skip, scale, counts, size):
    """``out[idx[i], j] += g[i, j]`` (atomic: indices repeat), except ``skip``; ``out`` zero-filled."""
    u = cuda.grid(1)
    if u >= size:
        return
    i = u // d
    r = idx[i]
    if r == skip or r < 0 or r >= n:
        return
    if scale:
        cuda.atomic.add(out, r * d + u % d, g[u] * (1.0 / counts[r]))
    else:
        cuda.atomic.add(out, r * d + u % d, g[u])


@cuda.jit
def mark_rows(idx, mark, n):
    """``mark[r] = 1`` for every row named (every writer writes the same value)."""
    i = cuda.grid(1)
    if i < idx.shape[0]:
        r = idx[i]
        if 0 <= r < n:
            mark[r] = 1


@cuda.jit
def renorm_rows(w, wo, ws, mark, n, d, max_norm, norm_type):
    """Each marked row whose ``norm_type``-norm exceeds ``max_norm`` scaled to ``max_norm / (norm + 1e-7)``."""
    r = cuda.grid(1)
    if r >= n or mark[r] == 0:
        return
    base = wo + r * ws[0]
    norm = float64(0)
    for j in range(d):
        v = abs(float64(w[base + j * ws[1]]))
        if norm_type == 1.0:
            norm += v
        elif norm_type == 2.0:
            norm += v * v
        elif norm_type == math.inf:
            norm = max(norm, v)
        else:
            norm += v ** norm_type
    if norm_type == 2.0:
        norm = math.sqrt(norm)
    elif norm_type != 1.0 and norm_type != math.inf:
        norm = norm ** (1.0 / norm_type)
    if norm > max_norm:
        f = max_norm / (norm + 1e-7)
        for j in range(d):
            w[base + j * ws[1]] *= f
