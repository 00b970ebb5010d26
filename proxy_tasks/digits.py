"""Tasks on scikit-learn's bundled digits (8x8 images, 10 classes; no download)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import nn
from .base import Classifier, register, split_indices


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)


def digits_split():
    """The fixed split: 1437 training and 360 validation images (20%, seed 0)."""
    x, y = _digits()
    tr, va = split_indices(len(x), 0.2, seed=0)
    return {"train_x": x[tr], "train_y": y[tr], "val_x": x[va], "val_y": y[va]}


@register
class DigitsMLP(Classifier):
    """An MLP classifier (`depth` hidden ReLU layers of `width`) on the 64 pixels of digits."""
    name = "digits_mlp"
    KNOBS = {"width": 64, "depth": 2}

    def validate(self):
        if self.width < 1 or self.depth < 0:
            raise ValueError(f"task {self.name!r}: width must be >= 1 and depth >= 0")

    def make_data(self):
        return digits_split()

    def init(self, key):
        dims = [64] + [self.width] * self.depth + [10]
        keys = jax.random.split(key, len(dims) - 1)
        return [nn.dense(k, a, b, scale=np.sqrt(2.0) if i < self.depth else 1.0)
                for i, (k, a, b) in enumerate(zip(keys, dims[:-1], dims[1:]))]

    def logits(self, params, x):
        for layer in params[:-1]:
            x = jax.nn.relu(nn.apply_dense(layer, x))
        return nn.apply_dense(params[-1], x)


@register
class DigitsViT(Classifier):
    """A small vision transformer on digits: `patch` x `patch` patches as tokens, learned position
    embeddings, `depth` pre-LN blocks of `width` with `heads` heads, mean pooling, linear head."""
    name = "digits_vit"
    KNOBS = {"width": 32, "depth": 2, "heads": 2, "patch": 2}

    def validate(self):
        if 8 % self.patch or self.width % self.heads or min(self.width, self.depth, self.heads) < 1:
            raise ValueError(f"task {self.name!r}: patch must divide 8, heads must divide width, "
                             "width/depth/heads >= 1")

    def make_data(self):
        return digits_split()

    def init(self, key):
        n_tok, d_tok = (8 // self.patch) ** 2, self.patch ** 2
        k = jax.random.split(key, self.depth + 3)
        return {"embed": nn.dense(k[0], d_tok, self.width),
                "pos": jax.random.normal(k[1], (n_tok, self.width), jnp.float32) * 0.02,
                "blocks": [nn.block_params(k[3 + i], self.width) for i in range(self.depth)],
                "ln": nn.layer_norm_params(self.width),
                "head": nn.dense(k[2], self.width, 10)}

    def logits(self, params, x):
        p, n = self.patch, 8 // self.patch
        tok = x.reshape(-1, n, p, n, p).transpose(0, 1, 3, 2, 4).reshape(-1, n * n, p * p)
        h = nn.apply_dense(params["embed"], tok) + params["pos"]
        for b in params["blocks"]:
            h = nn.block(b, h, self.heads)
        h = nn.layer_norm(params["ln"], h).mean(axis=1)
        return nn.apply_dense(params["head"], h)
