"""Adamax: Adam with the second moment replaced by a decaying infinity norm of the gradients."""
from ..autograd.grad_mode import no_grad
from ..factories import zeros_like
from .optimizer import Optimizer, advance, fused_update, new_step

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """``m = b1*m + (1-b1)*g``, ``u = max(b2*u, |g| + eps)``, ``p -= lr/(1-b1**t) * m / u``.
    ``foreach``, ``differentiable`` and ``capturable`` are accepted and have no effect."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, capturable=capturable))

    @no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = new_step()
                    state["exp_avg"] = zeros_like(p)
                    state["exp_inf"] = zeros_like(p)
                step = advance(state)
                fused_update("adamax", p, p.grad, [state["exp_avg"], state["exp_inf"]],
                             [1 - beta1, beta2, group["eps"], -(lr / (1 - beta1 ** step)), group["weight_decay"],
                              group["maximize"]])
        return loss
