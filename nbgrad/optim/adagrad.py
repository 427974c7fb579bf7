"""Adagrad: per-coordinate steps divided by the root of the summed squared gradients."""
from ..autograd.grad_mode import no_grad
from ..factories import full_like
from .optimizer import Optimizer, advance, fused_update, new_step

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """``s += g*g``; ``p -= clr * g / (sqrt(s) + eps)`` with ``clr = lr / (1 + (t-1)*lr_decay)``.
    As in PyTorch, the state of every parameter is made at construction, from the
    optimizer's (not the group's) ``initial_accumulator_value``. ``foreach``,
    ``differentiable`` and ``fused`` are accepted and have no effect."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused))
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p):
        state = self.state[p]
        if not state:
            state["step"] = new_step()
            state["sum"] = full_like(p, self.defaults["initial_accumulator_value"])
        return state

    @no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, lr_decay = group["lr"], group["lr_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._init_state(p)
                step = advance(state)
                clr = lr / (1 + (step - 1) * lr_decay)
                fused_update("adagrad", p, p.grad, [state["sum"]],
                             [-clr, group["eps"], group["weight_decay"], group["maximize"]])
        return loss
