"""NAdam: Adam with Nesterov momentum, its momentum coefficient warmed up by ``momentum_decay``."""
from ..autograd.grad_mode import no_grad
from ..factories import zeros_like
from .optimizer import Optimizer, advance, fused_update, new_step

__all__ = ["NAdam"]


class NAdam(Optimizer):
    """Adam's moments; the step mixes the gradient and the first moment with the momentum
    schedule ``mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``, whose running
    product is kept (as PyTorch keeps it, in the step count's dtype) in ``mu_product``.
    ``foreach``, ``capturable`` and ``differentiable`` are accepted and have no effect."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
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
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable))

    @no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), wd, decay = group["lr"], group["betas"], group["weight_decay"], group["momentum_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = new_step()
                    state["mu_product"] = new_step(1.0)
                    state["exp_avg"] = zeros_like(p)
                    state["exp_avg_sq"] = zeros_like(p)
                step = advance(state)
                mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * decay)))
                mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * decay)))
                mu_product = advance(state, "mu_product", by=mu)
                hyper = [1 - lr * wd, 1 - beta1, beta2, 1 - beta2, 1 - beta2 ** step, group["eps"],
                         -lr * (1.0 - mu) / (1.0 - mu_product), (-lr * mu_next) / (1.0 - mu_product * mu_next),
                         wd, group["decoupled_weight_decay"], group["maximize"]]
                fused_update("nadam", p, p.grad, [state["exp_avg"], state["exp_avg_sq"]], hyper)
        return loss
