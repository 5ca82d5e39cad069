"""An nn.LSTMCell stepped by hand for 20 steps, as a sequence-prediction
model does, then a linear read-out of the last hidden state."""
import torch

torch.manual_seed(0)
cell = torch.nn.LSTMCell(1, 5)
readout = torch.nn.Linear(5, 1)
series = torch.sin(torch.linspace(0, 6, 21)).reshape(21, 1, 1)
h = torch.zeros(1, 5)
c = torch.zeros(1, 5)
for t in range(20):
    h, c = cell(series[t], (h, c))
prediction = readout(h)
loss = ((prediction - series[20]) ** 2).mean()
loss.backward()
