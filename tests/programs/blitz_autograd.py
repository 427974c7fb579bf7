# Source: PyTorch tutorials, "Deep Learning with PyTorch: A 60 Minute Blitz", "A Gentle
# Introduction to torch.autograd" (beginner_source/blitz/autograd_tutorial.py).
# Changes: torch.rand inputs come from NumPy with a fixed seed (tests/programs/_data.py); the
# torchvision resnet18 used to show freezing/fine-tuning is replaced by a small nn.Sequential
# of the same pattern (no torchvision, no download): freeze all, replace the head, optimize it.
import torch
from torch import nn, optim
from _data import rand

a = torch.tensor([2., 3.], requires_grad=True)
b = torch.tensor([6., 4.], requires_grad=True)

Q = 3*a**3 - b**2

external_grad = torch.tensor([1., 1.])
Q.backward(gradient=external_grad)

# check if collected gradients are correct
print(9*a**2 == a.grad)
print(-2*b == b.grad)

x = rand(5, 5)
y = rand(5, 5)
z = rand((5, 5), requires_grad=True)

a = x + y
print(f"Does `a` require gradients?: {a.requires_grad}")
b = x + z
print(f"Does `b` require gradients?: {b.requires_grad}")

# In place of: model = resnet18(weights=ResNet18_Weights.DEFAULT)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1000))
model.fc = model[2]

# Freeze all the parameters in the network
for param in model.parameters():
    param.requires_grad = False

model.fc = nn.Linear(32, 10)
model[2] = model.fc

# Optimize only the classifier
optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)

print([p.requires_grad for p in model.parameters()])
