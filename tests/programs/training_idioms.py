# Source: idioms from the PyTorch docs, as most training scripts write them:
# torch.manual_seed for reproducibility (notes/randomness.rst), the device line
# `"cuda" if torch.cuda.is_available() else "cpu"` and `.to(device)`, DataLoader over a
# TensorDataset, an LR scheduler stepped per epoch (optim.rst: "How to adjust learning rate",
# StepLR and ExponentialLR), model.eval() + torch.no_grad() evaluation, and the
# "Saving and Loading Models" recipe (beginner_source/saving_loading_models.py): state_dict
# save/load and a general checkpoint with the optimizer's state. The program asserts its own
# invariants (reload reproduces outputs, seeding reproduces draws, lr schedule values).
import os
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import ExponentialLR, StepLR
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
a = torch.randn(3)
torch.manual_seed(0)
b = torch.randn(3)
assert torch.equal(a, b)

device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"Using {device} device")

# a noisy two-class problem on 2-D points
X = torch.randn(512, 2)
y = (X[:, 0] * X[:, 1] > 0).long()
train_ds = TensorDataset(X[:384], y[:384])
valid_ds = TensorDataset(X[384:], y[384:])
train_loader = DataLoader(train_ds, batch_size=32, shuffle=True)
valid_loader = DataLoader(valid_ds, batch_size=64)


class TheModelClass(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 2)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.drop(F.relu(self.fc2(x)))
        return self.fc3(x)


model = TheModelClass().to(device)
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
scheduler = StepLR(optimizer, step_size=10, gamma=0.5)


def evaluate(model, loader):
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    with torch.no_grad():
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            loss_sum += criterion(outputs, targets).item() * len(targets)
            correct += (outputs.argmax(dim=1) == targets).sum().item()
            total += len(targets)
    return loss_sum / total, correct / total


first_loss, first_acc = evaluate(model, valid_loader)
print(f"before training: loss {first_loss:.4f} accuracy {first_acc:.3f}")
lrs = []
for epoch in range(30):
    model.train()
    for inputs, targets in train_loader:
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
    lrs.append(scheduler.get_last_lr()[0])
    scheduler.step()
    if epoch % 10 == 9:
        val_loss, val_acc = evaluate(model, valid_loader)
        print(f"epoch {epoch + 1}: lr {lrs[-1]:.4f} loss {val_loss:.4f} accuracy {val_acc:.3f}")
assert lrs[0] == 0.1 and lrs[10] == 0.05 and lrs[20] == 0.025, lrs
final_loss, final_acc = evaluate(model, valid_loader)
print(f"after training: loss {final_loss:.4f} accuracy {final_acc:.3f}")

# Save/Load state_dict (Recommended)
PATH = os.path.join(tempfile.mkdtemp(), "model.pt")
torch.save(model.state_dict(), PATH)
model2 = TheModelClass()
model2.load_state_dict(torch.load(PATH, weights_only=True))
model2.to(device)
model2.eval()
with torch.no_grad():
    assert torch.equal(model2(X), model(X))

# Saving & Loading a General Checkpoint for Inference and/or Resuming Training
torch.save({
            'epoch': 30,
            'model_state_dict': model.state_dict(),
            'optimizer_state_dict': optimizer.state_dict(),
            'loss': final_loss,
            }, PATH)
model3 = TheModelClass()
optimizer3 = optim.SGD(model3.parameters(), lr=0.1, momentum=0.9)
checkpoint = torch.load(PATH, weights_only=True)
model3.load_state_dict(checkpoint['model_state_dict'])
optimizer3.load_state_dict(checkpoint['optimizer_state_dict'])
epoch = checkpoint['epoch']
loss = checkpoint['loss']
assert epoch == 30 and loss == final_loss
assert optimizer3.param_groups[0]['lr'] == optimizer.param_groups[0]['lr']
model3.eval()
with torch.no_grad():
    assert torch.equal(model3(X), model(X))

# ExponentialLR, as in the optim docs
optimizer = optim.SGD(model.parameters(), lr=0.01)
scheduler = ExponentialLR(optimizer, gamma=0.9)
for epoch in range(3):
    optimizer.step()
    scheduler.step()
print("exponential lr", scheduler.get_last_lr())
print("reloaded models agree; done")
