"""The main job: train a classifier on scikit-learn's handwritten digits with nbgrad.

The code is the PyTorch code a user writes (``import nbgrad as torch``): a model, a
DataLoader, an optimizer and a loss, a training loop with a progress bar, a checkpoint saved
and loaded back into a fresh model, a loss/accuracy curve and the model's backward graph as
pictures. Where PyTorch is installed, the same script runs again with it and prints the time
per epoch of both.

    python examples/train_digits.py                # nbgrad, then PyTorch for comparison
    python examples/train_digits.py --no-compare   # nbgrad only
    python examples/train_digits.py --out DIR      # where the pictures and checkpoint go
"""
import argparse
import importlib
import os
import sys
import time

import numpy as np


def load_digits_split(seed=0):
    """The 1797 8x8 digits, scaled to [0, 1], split 80/20 with a fixed permutation."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.images.reshape(-1, 64) / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def make_model(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def accuracy(torch, model, x, y):
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).sum().item()
    model.train()
    return correct / len(y)


def main_loop(torch, epochs, out_dir, progress, pictures):
    DataLoader = torch.utils.data.DataLoader
    TensorDataset = torch.utils.data.TensorDataset
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = load_digits_split()
    train_set = TensorDataset(torch.tensor(xtr), torch.tensor(ytr))
    x_test, y_test = torch.tensor(xte), torch.tensor(yte)
    loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))

    model = make_model(torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    history = {"loss": [], "train_acc": [], "test_acc": []}
    epoch_times = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs * len(loader), desc=f"{torch.__name__:>6}", unit="batch", leave=True)
    for epoch in range(epochs):
        start = time.perf_counter()
        total, seen = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            seen += len(yb)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{history['test_acc'][-1]:.3f}"
                                if history["test_acc"] else "-")
        epoch_times.append(time.perf_counter() - start)
        history["loss"].append(total / seen)
        history["train_acc"].append(accuracy(torch, model, torch.tensor(xtr), torch.tensor(ytr)))
        history["test_acc"].append(accuracy(torch, model, x_test, y_test))
    if bar is not None:
        bar.close()
    summary = {"accuracy": history["test_acc"][-1], "first_epoch_s": epoch_times[0],
               "epoch_s": float(np.median(epoch_times[1:])) if len(epoch_times) > 1 else epoch_times[0],
               "history": history}
    if pictures:
        summary.update(save_and_reload(torch, model, x_test, y_test, out_dir))
        summary["graph"] = draw_graph(torch, model, loss_fn, x_test[:8], y_test[:8], out_dir)
        summary["curve"] = draw_curves(history, out_dir)
    return summary


def save_and_reload(torch, model, x_test, y_test, out_dir):
    """Save a checkpoint, load it into a fresh model, and check that it scores the same."""
    path = os.path.join(out_dir, "digits_mlp.safetensors")
    torch.save({"model": model.state_dict(), "classes": list(range(10))}, path)
    fresh = make_model(torch)
    checkpoint = torch.load(path)
    fresh.load_state_dict(checkpoint["model"])
    return {"checkpoint": path, "reloaded_accuracy": accuracy(torch, fresh, x_test, y_test)}


def draw_graph(torch, model, loss_fn, x, y, out_dir):
    """The backward graph of one loss as SVG (torchviz's make_dot), if Graphviz is installed."""
    try:
        from nbgrad.viz import make_dot
        dot = make_dot(loss_fn(model(x), y), params=dict(model.named_parameters()))
        dot.format = "svg"
        return dot.render(os.path.join(out_dir, "digits_graph"), cleanup=True)
    except Exception as error:                 # graphviz's Python package or its `dot` program missing
        print(f"(no graph picture: {type(error).__name__}: {error})")
        return None


def draw_curves(history, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_acc.plot(epochs, history["train_acc"], marker="o", label="train")
    ax_acc.plot(epochs, history["test_acc"], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.8, 1.0))
    ax_acc.legend()
    fig.suptitle("nbgrad: an MLP on scikit-learn's digits")
    fig.tight_layout()
    path = os.path.join(out_dir, "digits_curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "output"))
    parser.add_argument("--no-compare", action="store_true", help="do not run the same script with PyTorch")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    import nbgrad
    ours = main_loop(nbgrad, args.epochs, args.out, not args.no_progress, True)
    total = time.perf_counter() - start
    print(f"nbgrad: test accuracy {ours['accuracy']:.2%} after {args.epochs} epochs; reloaded from "
          f"{os.path.relpath(ours['checkpoint'])}: {ours['reloaded_accuracy']:.2%}")
    print(f"nbgrad: {ours['epoch_s'] * 1e3:.0f} ms per epoch (first epoch, with kernel compiles: "
          f"{ours['first_epoch_s']:.2f} s); whole run {total:.1f} s")
    print(f"pictures: {os.path.relpath(ours['curve'])}" + (f", {os.path.relpath(ours['graph'])}" if ours["graph"] else ""))
    if not args.no_compare:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: no comparison")
        else:
            theirs = main_loop(torch, args.epochs, args.out, not args.no_progress, False)
            print(f"PyTorch {torch.__version__}: test accuracy {theirs['accuracy']:.2%}, "
                  f"{theirs['epoch_s'] * 1e3:.0f} ms per epoch; nbgrad/PyTorch time per epoch: "
                  f"{ours['epoch_s'] / theirs['epoch_s']:.2f}")
    if ours["accuracy"] < 0.97 or ours["reloaded_accuracy"] != ours["accuracy"]:
        sys.exit("the model did not reach 97% test accuracy, or the reloaded one scores differently")


if __name__ == "__main__":
    main()
