"""Recurrent layers: ``RNN`` (tanh/relu), ``LSTM``, ``GRU`` and their cells, composed of Tensor
ops (``addmm``, ``sigmoid``, ``tanh``, ``chunk``, ``stack``), so their gradients need no rule
of their own.

PyTorch's parameter names (``weight_ih_l0``...), shapes, gate order (LSTM ``i, f, g, o``;
GRU ``r, z, n``) and initialisation (uniform in ``±1/sqrt(hidden_size)``), so that a state
dict moves across unchanged. A layer projects the whole input sequence onto the gates with
one matrix product before the time loop (both biases folded in once); each step then adds
``h @ weight_hh.T`` with one ``addmm``. Single direction only."""
import math
import numbers
import warnings

from ..factories import empty, zeros
from ..functional.linalg import addmm
from ..functional.shape import stack
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# -- one step, shared by cells and layers ------------------------------------------------------------
# ``gi``: the input's gate projection for this step, biases included (``x W_ih^T + b_ih (+ b_hh)``).
def _rnn_step(gi, h, w_hh, b_hh, relu):
    pre = addmm(gi, h, w_hh.t()) if b_hh is None else addmm(gi + b_hh, h, w_hh.t())
    return pre.relu() if relu else pre.tanh()


def _lstm_step(gi, h, c, w_hh, b_hh):
    gates = addmm(gi if b_hh is None else gi + b_hh, h, w_hh.t())
    i, f, g, o = gates.chunk(4, 1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def _gru_step(gi, h, w_hh, b_hh):
    """``n`` needs ``r * (h W_hn^T + b_hn)``: the hidden projection is kept apart from ``gi``."""
    gh = h.matmul(w_hh.t()) if b_hh is None else addmm(b_hh, h, w_hh.t())
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r = (i_r + h_r).sigmoid()
    z = (i_z + h_z).sigmoid()
    n = (i_n + r * h_n).tanh()
    return n + z * (h - n)                      # (1 - z) * n + z * h


def _reset_uniform(module):
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        init.uniform_(weight, -stdv, stdv)


# -- layers ------------------------------------------------------------------------------------------
class RNNBase(Module):
    """What the three layers share: the parameters per layer, the checks, the layer loop."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                             "being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        if not isinstance(hidden_size, int):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if bidirectional or proj_size:
            raise NotImplementedError("nbgrad's recurrent layers are single-direction and without projections "
                                      "(bidirectional=False, proj_size=0)")
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        gate_size = _GATES[mode] * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size
            kw = dict(device=device, dtype=dtype)
            setattr(self, f"weight_ih_l{layer}", Parameter(empty((gate_size, layer_input), **kw)))
            setattr(self, f"weight_hh_l{layer}", Parameter(empty((gate_size, hidden_size), **kw)))
            if bias:
                setattr(self, f"bias_ih_l{layer}", Parameter(empty(gate_size, **kw)))
                setattr(self, f"bias_hh_l{layer}", Parameter(empty(gate_size, **kw)))
        self.reset_parameters()

    def reset_parameters(self):
        _reset_uniform(self)

    def _layer_weights(self, layer):
        get = self._parameters.get
        return (get(f"weight_ih_l{layer}"), get(f"weight_hh_l{layer}"), get(f"bias_ih_l{layer}"),
                get(f"bias_hh_l{layer}"))

    def flatten_parameters(self):
        """PyTorch packs the weights into one buffer for cuDNN; nbgrad has nothing to pack."""

    @property
    def all_weights(self):
        return [[p for p in self._layer_weights(layer) if p is not None] for layer in range(self.num_layers)]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # -- checks, in PyTorch's order ------------------------------------------------------------------
    def _check_input(self, input):
        if input.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.dim()}D instead")

    def _check_sizes(self, input, states):
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {input.shape[-1]}")
        batch = input.shape[0] if self.batch_first else input.shape[1]
        expected = (self.num_layers, batch, self.hidden_size)
        for k, state in enumerate(states):
            if tuple(state.shape) != expected:
                where = "hidden" if len(states) == 1 else f"hidden[{k}]"
                raise RuntimeError(f"Expected {where} size {expected}, got {list(state.shape)}")

    def _run(self, input, states, step):
        """The layers over ``input`` (3-D, time-major after the transpose below); ``states``: a
        tuple of ``(num_layers, N, H)`` tensors; ``step(gi, layer_states, layer)`` → new states,
        the first being the layer's output for that step."""
        if self.batch_first:
            input = input.transpose(0, 1)
        steps, batch = input.shape[0], input.shape[1]
        finals = []
        for layer in range(self.num_layers):
            w_ih, _, b_ih, b_hh = self._layer_weights(layer)
            # all steps' input projections at once; b_hh joins b_ih here except for GRU's n gate
            flat = input.reshape(steps * batch, input.shape[2])
            bias = b_ih if b_ih is None or self.mode == "GRU" else b_ih + b_hh
            gi = F.linear(flat, w_ih, bias).reshape(steps, batch, -1).unbind(0)
            layer_states = tuple(s[layer] for s in states)
            outputs = []
            for t in range(steps):
                layer_states = step(gi[t], layer_states, layer)
                outputs.append(layer_states[0])
            finals.append(layer_states)
            input = stack(outputs, 0)
            if self.dropout and self.training and layer < self.num_layers - 1:
                input = F.dropout(input, self.dropout, self.training)
        output = input.transpose(0, 1) if self.batch_first else input
        return output, tuple(stack([f[k] for f in finals], 0) for k in range(len(states)))

    def _forward(self, input, hx, n_states):
        """Unbatched input gets a batch dim of 1 (and loses it again); missing states are zeros."""
        self._check_input(input)
        batched = input.dim() == 3
        if hx is not None:
            states = (hx,) if n_states == 1 else tuple(hx)
            want = 3 if batched else 2
            if any(s.dim() != want for s in states):
                kind = "batched 3-D" if batched else "unbatched 2-D"
                if n_states == 1:
                    raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got {hx.dim()}-D tensor")
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                   f"({states[0].dim()}-D, {states[1].dim()}-D) tensors")
            if not batched:
                states = tuple(s.unsqueeze(1) for s in states)
        if not batched:
            input = input.unsqueeze(0 if self.batch_first else 1)
        if hx is None:
            batch = input.shape[0] if self.batch_first else input.shape[1]
            states = tuple(zeros((self.num_layers, batch, self.hidden_size), dtype=input.dtype)
                           for _ in range(n_states))
        self._check_sizes(input, states)
        output, finals = self._run(input, states, self._step)
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            finals = tuple(f.squeeze(1) for f in finals)
        return output, finals


class RNN(RNNBase):
    """``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or ``relu``), for each layer and step.
    Returns ``(output, h_n)``."""

    def __init__(self, *args, **kwargs):
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if len(args) > 3:
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, *args, **kwargs)
        self.nonlinearity = nonlinearity

    def _step(self, gi, states, layer):
        _, w_hh, _, b_hh = self._layer_weights(layer)
        # b_hh is already in gi (folded in by _run)
        return (_rnn_step(gi, states[0], w_hh, None, self.mode == "RNN_RELU"),)

    def forward(self, input, hx=None):
        output, (h_n,) = self._forward(input, hx, 1)
        return output, h_n


class LSTM(RNNBase):
    """Gates ``i, f, g, o`` (in that order in the weights): ``c' = f c + i g``, ``h' = o tanh(c')``.
    Returns ``(output, (h_n, c_n))``."""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    def _step(self, gi, states, layer):
        _, w_hh, _, _ = self._layer_weights(layer)
        return _lstm_step(gi, states[0], states[1], w_hh, None)

    def forward(self, input, hx=None):
        output, (h_n, c_n) = self._forward(input, hx, 2)
        return output, (h_n, c_n)


class GRU(RNNBase):
    """Gates ``r, z, n``: ``n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn))``,
    ``h' = (1 - z) n + z h``. Returns ``(output, h_n)``."""

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)

    def _step(self, gi, states, layer):
        _, w_hh, _, b_hh = self._layer_weights(layer)
        return (_gru_step(gi, states[0], w_hh, b_hh),)

    def forward(self, input, hx=None):
        output, (h_n,) = self._forward(input, hx, 1)
        return output, h_n


# -- cells -------------------------------------------------------------------------------------------
class RNNCellBase(Module):
    """One step: parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        kw = dict(device=device, dtype=dtype)
        self.weight_ih = Parameter(empty((num_chunks * hidden_size, input_size), **kw))
        self.weight_hh = Parameter(empty((num_chunks * hidden_size, hidden_size), **kw))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, **kw))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_uniform(self)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input, states):
        """Checks (PyTorch's texts), a batch dim of 1 for unbatched input, zeros for missing
        states; returns the 2-D input, the 2-D states and whether the input was batched."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        for s in states:
            if s is not None and s.dim() not in (1, 2):
                raise ValueError(f"{name}: Expected hidden to be 1D or 2D, got {s.dim()}D instead")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
        states = [zeros((input.shape[0], self.hidden_size), dtype=input.dtype) if s is None
                  else s if batched else s.unsqueeze(0) for s in states]
        if input.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]} expected {self.input_size}")
        for k, s in enumerate(states):
            if input.shape[0] != s.shape[0]:
                raise RuntimeError(f"Input batch size {input.shape[0]} doesn't match hidden{k} batch size "
                                   f"{s.shape[0]}")
            if s.shape[1] != self.hidden_size:
                raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got {s.shape[1]}, expected "
                                   f"{self.hidden_size}")
        return input, states, batched

    def _gi(self, input):
        return F.linear(input, self.weight_ih, self.bias_ih)


class RNNCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        input, (h,), batched = self._prepare(input, [hx])
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        h = _rnn_step(self._gi(input), h, self.weight_hh, self.bias_hh, self.nonlinearity == "relu")
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        input, (h, c), batched = self._prepare(input, [None, None] if hx is None else list(hx))
        h, c = _lstm_step(self._gi(input), h, c, self.weight_hh, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        input, (h,), batched = self._prepare(input, [hx])
        h = _gru_step(self._gi(input), h, self.weight_hh, self.bias_hh)
        return h if batched else h.squeeze(0)
