"""MNIST-1D-style data generated procedurally, with a 1-D convolutional classifier.

After Greydanus (2020): ten 12-point templates (one per class) are padded, scaled, shifted,
sheared, smoothed-noise-corrupted and resampled to `length` points. It is generated here with a
fixed seed (no download) and is a sequence task with translation: a different inductive bias from
the image tasks. This is a re-implementation in the same spirit, not the original's exact data.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import nn
from .base import Classifier, register

_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
]) - 5.0


@functools.lru_cache(maxsize=4)
def make_mnist1d(n: int, length: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    pad = 36 + 60  # templates padded into a longer canvas, then shifted and cut
    canvas = np.zeros((n, 12 + pad))
    canvas[:, pad // 2: pad // 2 + 12] = _TEMPLATES[y]
    shift = rng.integers(-24, 25, n)
    canvas = np.stack([np.roll(c, s) for c, s in zip(canvas, shift)])
    scale = rng.uniform(0.7, 1.3, (n, 1))
    t = np.linspace(-1, 1, canvas.shape[1])
    canvas = canvas * scale + rng.normal(0, 0.25, (n, 1)) * t  # random shear (a linear trend)
    grid = np.linspace(0, canvas.shape[1] - 1, length)
    x = np.stack([np.interp(grid, np.arange(canvas.shape[1]), c) for c in canvas])
    corr = rng.normal(size=(n, length + 4))
    corr = (corr[:, :-4] + corr[:, 1:-3] + corr[:, 2:-2] + corr[:, 3:-1] + corr[:, 4:]) / 5.0
    x = x + 0.25 * rng.normal(size=x.shape) + 0.5 * corr  # white + correlated noise
    return x.astype(np.float32), y.astype(np.int32)


@register
class MNIST1D(Classifier):
    """A 1-D CNN: `depth` conv layers (kernel 5, stride 2, `width` channels, ReLU), then a linear
    classifier over the flattened features."""
    name = "mnist1d"
    KNOBS = {"width": 16, "depth": 2, "length": 40, "n_train": 4000, "n_val": 1000, "data_seed": 0}
    DEFAULTS = {"steps": 200, "batch": 128}

    def validate(self):
        if min(self.width, self.depth, self.n_train, self.n_val) < 1 or self.length < 2 ** self.depth:
            raise ValueError(f"task {self.name!r}: width/depth/n_train/n_val >= 1 and length >= 2**depth")

    def make_data(self):
        x, y = make_mnist1d(self.n_train + self.n_val, self.length, 2000 + self.data_seed)
        return {"train_x": x[:self.n_train], "train_y": y[:self.n_train],
                "val_x": x[self.n_train:], "val_y": y[self.n_train:]}

    def _out_len(self):
        n = self.length
        for _ in range(self.depth):
            n = (n + 1) // 2
        return n

    def init(self, key):
        k = jax.random.split(key, self.depth + 1)
        convs, c_in = [], 1
        for i in range(self.depth):
            w = jax.random.normal(k[i], (5, c_in, self.width), jnp.float32) * np.sqrt(2.0 / (5 * c_in))
            convs.append({"w": w, "b": jnp.zeros((self.width,), jnp.float32)})
            c_in = self.width
        return {"convs": convs, "head": nn.dense(k[-1], self._out_len() * self.width, 10)}

    def logits(self, params, x):
        h = x[:, :, None]  # (batch, length, channels)
        for c in params["convs"]:
            h = jax.lax.conv_general_dilated(h, c["w"], (2,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
            h = jax.nn.relu(h + c["b"])
        return nn.apply_dense(params["head"], h.reshape(h.shape[0], -1))
