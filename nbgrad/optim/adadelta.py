"""Adadelta: steps scaled by the ratio of running RMS of past updates to that of gradients."""
from ..autograd.grad_mode import no_grad
from ..factories import zeros_like
from .optimizer import Optimizer, advance, fused_update, new_step

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """``v = rho*v + (1-rho)*g*g``, ``d = sqrt(a + eps) / sqrt(v + eps) * g``,
    ``a = rho*a + (1-rho)*d*d``, ``p -= lr * d``. ``foreach``, ``capturable`` and
    ``differentiable`` are accepted and have no effect."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      capturable=capturable, foreach=foreach, differentiable=differentiable))

    @no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            rho = group["rho"]
            hyper = [-group["lr"], rho, 1 - rho, group["eps"], group["weight_decay"], group["maximize"]]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = new_step()
                    state["square_avg"] = zeros_like(p)
                    state["acc_delta"] = zeros_like(p)
                advance(state)
                fused_update("adadelta", p, p.grad, [state["square_avg"], state["acc_delta"]], hyper)
        return loss
