"""RMSprop: steps divided by a running root mean square of the gradient."""
from ..autograd.grad_mode import no_grad
from ..factories import zeros_like
from .optimizer import Optimizer, advance, fused_update, new_step

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """``v = alpha*v + (1-alpha)*g*g``; ``centered`` subtracts the square of a running mean
    of ``g`` from ``v``; ``p -= lr * g / (sqrt(v) + eps)``, or with ``momentum`` the step
    goes through a buffer ``b = momentum*b + g / (sqrt(v) + eps)``. ``foreach``,
    ``capturable`` and ``differentiable`` are accepted and have no effect."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    @no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            alpha, momentum, centered = group["alpha"], group["momentum"], group["centered"]
            hyper = [-group["lr"], alpha, 1 - alpha, group["eps"], group["weight_decay"], momentum, centered,
                     group["maximize"]]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = new_step()
                    state["square_avg"] = zeros_like(p)
                    if momentum > 0:
                        state["momentum_buffer"] = zeros_like(p)
                    if centered:
                        state["grad_avg"] = zeros_like(p)
                advance(state)
                fused_update("rmsprop", p, p.grad, [state["square_avg"], state.get("grad_avg") if centered else None,
                                                    state.get("momentum_buffer") if momentum > 0 else None], hyper)
        return loss
