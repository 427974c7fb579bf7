"""RAdam: Adam whose adaptive step is switched on, and rectified, once the variance estimate is usable."""
from ..autograd.grad_mode import no_grad
from ..factories import zeros_like
from .optimizer import Optimizer, advance, fused_update, new_step

__all__ = ["RAdam"]


class RAdam(Optimizer):
    """Adam's moments; while the approximated SMA length ``rho_t`` is at most 5 the step is
    ``lr * m / (1-b1**t)`` (momentum SGD), after that the Adam step times the rectification
    ``r_t``. ``foreach``, ``capturable`` and ``differentiable`` are accepted and have no
    effect."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
                 *, foreach=None, maximize=False, capturable=False, differentiable=False):
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
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      foreach=foreach, capturable=capturable,
                                      decoupled_weight_decay=decoupled_weight_decay, differentiable=differentiable))

    @no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = new_step()
                    state["exp_avg"] = zeros_like(p)
                    state["exp_avg_sq"] = zeros_like(p)
                step = advance(state)
                bias2 = 1 - beta2 ** step
                rho_inf = 2 / (1 - beta2) - 1
                rho_t = rho_inf - 2 * step * (beta2 ** step) / bias2
                rect = 0.0
                if rho_t > 5.0:
                    rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
                hyper = [1 - lr * wd, 1 - beta1, beta2, 1 - beta2, 1 - beta1 ** step, lr, bias2 ** 0.5, group["eps"],
                         rect, wd, group["decoupled_weight_decay"], group["maximize"]]
                fused_update("radam", p, p.grad, [state["exp_avg"], state["exp_avg_sq"]], hyper)
        return loss
