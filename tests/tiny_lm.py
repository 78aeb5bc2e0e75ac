"""A tiny language model and data for the training tests (and the DDP worker they launch)."""

import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 11


class TinyLM(nn.Module):
    """Embedding, dropout, norm and a tied output: enough to exercise every part of the loop."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        self.mix = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(d, VOCAB, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        return self.head(self.norm(self.drop(torch.relu(self.mix(self.emb(x))))))


def lm_loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def batches(i: int, size: int = 4):
    """Batch i: random tokens whose targets are the next token id (mod VOCAB)."""
    g = torch.Generator().manual_seed(i)
    x = torch.randint(VOCAB, (size, 6), generator=g)
    return x, (x + 1) % VOCAB


def make_model(seed: int = 0) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM()
