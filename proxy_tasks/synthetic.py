"""A synthetic task for tests and smoke runs: softmax regression on a noisy linear teacher."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .base import Classifier, register


@register
class LogReg(Classifier):
    """Multinomial logistic regression; labels are drawn from a random linear teacher's softmax, so
    the data are not separable and the optimum is finite. Compiles in about a second."""
    name = "logreg"
    KNOBS = {"dim": 16, "classes": 4, "n_train": 1024, "n_val": 512, "data_seed": 0}
    DEFAULTS = {"steps": 100, "batch": 64}

    def validate(self):
        if min(self.dim, self.classes - 1, self.n_train, self.n_val) < 1:
            raise ValueError(f"task {self.name!r}: dim, n_train, n_val must be >= 1 and classes >= 2")

    def make_data(self):
        rng = np.random.default_rng(1000 + self.data_seed)
        n = self.n_train + self.n_val
        x = rng.normal(size=(n, self.dim)).astype(np.float32)
        teacher = rng.normal(size=(self.dim, self.classes)) * 2.0 / np.sqrt(self.dim)
        logits = x @ teacher
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        y = (p.cumsum(1) > rng.random((n, 1))).argmax(1).astype(np.int32)
        return {"train_x": x[:self.n_train], "train_y": y[:self.n_train],
                "val_x": x[self.n_train:], "val_y": y[self.n_train:]}

    def init(self, key):
        return {"w": jax.random.normal(key, (self.dim, self.classes), jnp.float32) * 0.01,
                "b": jnp.zeros((self.classes,), jnp.float32)}

    def logits(self, params, x):
        return x @ params["w"] + params["b"]
