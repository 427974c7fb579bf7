"""Stochastic gradient descent, with optional momentum (heavy-ball or Nesterov) and weight decay."""
from ..autograd.grad_mode import no_grad
from ..factories import empty_like
from .optimizer import Optimizer, fused_update

__all__ = ["SGD"]


class SGD(Optimizer):
    """PyTorch's formulation: the momentum buffer accumulates gradients, ``b = m*b + (1-d)*g``
    (the first step sets ``b = g``), and the step is ``p -= lr * b`` (``lr * (g + m*b)``
    with Nesterov). ``foreach``, ``differentiable`` and ``fused`` are accepted and have no
    effect: there is one implementation."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    @no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            momentum = group["momentum"]
            hyper = [-group["lr"], group["weight_decay"], momentum, 1 - group["dampening"], group["nesterov"],
                     group["maximize"], 0]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = None
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    hyper[6] = buf is None          # the first step sets the buffer to the gradient
                    if buf is None:
                        buf = state["momentum_buffer"] = empty_like(p)
                fused_update("sgd", p, p.grad, [buf], hyper)
        return loss
