"""A 6-layer nn.TransformerEncoder language model (d_model 128), one
training step's backward: hundreds of nodes, six identical layers.
Pass --layers N for a smaller one."""
import sys

import torch
from torch import nn

layers = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else 6
torch.manual_seed(0)


class LanguageModel(nn.Module):
    def __init__(self, vocabulary=50, d_model=128, heads=4, layers=6):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=256, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocabulary)

    def forward(self, tokens):
        return self.head(self.encoder(self.embedding(tokens)))


model = LanguageModel(layers=layers)
tokens = torch.randint(0, 50, (2, 8))
targets = torch.randint(0, 50, (2, 8))
logits = model(tokens)
loss = nn.functional.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1))
loss.backward()
print("loss:", round(loss.item(), 4))
