"""The tutorial programs nbgrad is built to run: ordinary PyTorch autograd code, with
``import nbgrad as torch`` as its only change.

Each program is a function of the ``torch`` module it runs on (nbgrad unless told
otherwise), so that the tests can run the very same code with PyTorch and compare.
``python examples/tutorials.py`` runs them all and prints their gradients.
"""
import nbgrad as torch
from nbgrad.autograd import Variable


def graph_5x5(torch=torch):
    """A small graph with fan-out (``a`` is used twice) and a scalar loss."""
    a = torch.randn((5, 5), requires_grad=True)
    x1 = torch.randn((5, 5), requires_grad=True)
    x2 = torch.randn((5, 5), requires_grad=True)
    x3 = torch.randn((5, 5), requires_grad=True)
    x4 = torch.randn((5, 5), requires_grad=True)
    b = x1 * a
    c = x2 * a
    d = x3 * b + x4 * c
    L = (10 - d).sum()
    L.backward()
    return {"a": a, "x1": x1, "x2": x2, "x3": x3, "x4": x4, "L": L}


def linear_regression(torch=torch, steps=500, lr=0.01):
    """Fit ``y = w x + b`` by gradient descent, updating through ``.data`` as old tutorials do."""
    torch.manual_seed(0)
    x = torch.randn(100, 1)
    noise = torch.randn(100, 1)
    y = 3 * x + 2 + 0.1 * noise
    w = torch.randn(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    losses = []
    for _ in range(steps):
        y_pred = x * w + b
        loss = ((y_pred - y) ** 2).mean()
        loss.backward()
        w.data -= lr * w.grad.data
        b.data -= lr * b.grad.data
        w.grad.data.zero_()
        b.grad.data.zero_()
        losses.append(loss.item())
    return {"x": x, "y": y, "w": w, "b": b, "losses": losses}


def two_layer_network(torch=torch, steps=200, lr=0.5):
    """A one-hidden-layer network (relu, then sigmoid) trained on mean squared error with
    manual SGD steps under ``torch.no_grad()``."""
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    true_w = torch.randn(3, 1)
    Y = torch.sigmoid(torch.matmul(X, true_w))
    W1 = (torch.randn(3, 16) * 0.5).requires_grad_()
    b1 = torch.zeros(16, requires_grad=True)
    W2 = (torch.randn(16, 1) * 0.5).requires_grad_()
    b2 = torch.zeros(1, requires_grad=True)
    params = [W1, b1, W2, b2]
    losses, first_grads = [], None
    for step in range(steps):
        h = torch.relu(torch.matmul(X, W1) + b1)
        out = torch.sigmoid(h @ W2 + b2)
        loss = ((out - Y) ** 2).mean()
        loss.backward()
        if step == 0:
            first_grads = [p.grad.clone() for p in params]
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad.zero_()
        losses.append(loss.item())
    return {"X": X, "Y": Y, "params": params, "losses": losses, "first_grads": first_grads}


def square_plus_three(torch=torch):
    """f(x) = x**2 + 3 at x = 7: df/dx = 14."""
    x = torch.tensor(7.0, requires_grad=True)
    f = x ** 2 + 3
    f.backward()
    return {"x": x, "f": f}


def cubic_polynomial(torch=torch):
    """y = x**3 + 7x**2 + 5x + 10 elementwise on a 3x3 tensor: dy/dx = 3x**2 + 14x + 5."""
    x = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.5], [2.0, -0.25, 4.0]], requires_grad=True)
    y = x ** 3 + 7 * x ** 2 + 5 * x + 10
    y.sum().backward()
    return {"x": x, "y": y}


def rnn_cell(torch=torch, Variable=Variable):
    """One step of a vanilla RNN cell, written with the legacy ``Variable`` wrapper."""
    x = Variable(torch.randn(1, 10))
    prev_h = Variable(torch.randn(1, 20))
    W_h = Variable(torch.randn(20, 20), requires_grad=True)
    W_x = Variable(torch.randn(20, 10), requires_grad=True)
    i2h = torch.matmul(W_x, x.t())
    h2h = torch.matmul(W_h, prev_h.t())
    next_h = i2h + h2h
    next_h = next_h.tanh()
    next_h.sum().backward()
    return {"x": x, "prev_h": prev_h, "W_h": W_h, "W_x": W_x, "next_h": next_h}


PROGRAMS = [graph_5x5, linear_regression, two_layer_network, square_plus_three, cubic_polynomial, rnn_cell]


def main():
    torch.manual_seed(0)
    r = graph_5x5()
    print("(a) 5x5 graph: L =", r["L"].item())
    for name in ("a", "x1", "x2", "x3", "x4"):
        print(f"d L / d {name} =\n{r[name].grad}")

    r = linear_regression()
    print(f"\n(b) linear regression: w = {r['w'].item():.4f}, b = {r['b'].item():.4f} "
          f"(data: y = 3x + 2 + noise), loss {r['losses'][0]:.4f} -> {r['losses'][-1]:.4f}")

    r = two_layer_network()
    print(f"\n(c) two-layer network: loss {r['losses'][0]:.5f} -> {r['losses'][-1]:.5f}")
    print("first-step gradient of W2 =\n", r["first_grads"][2])

    r = square_plus_three()
    print(f"\n(d) f = x**2 + 3 at x = 7: df/dx = {r['x'].grad.item()}")

    r = cubic_polynomial()
    print("\n(e) y = x**3 + 7x**2 + 5x + 10: dy/dx =\n", r["x"].grad)

    torch.manual_seed(0)
    r = rnn_cell()
    print("\n(f) RNN cell: next_h.sum() =", r["next_h"].sum().item())
    print("d / d W_h =\n", r["W_h"].grad)
    print("d / d W_x =\n", r["W_x"].grad)


if __name__ == "__main__":
    main()
