"""A task of your own, outside the lionsearch packages: a small two-layer MLP on scikit-learn's
two moons. Name it in a config as `configs/examples/moons_task.py:Moons` (a file) or
`moons_task:Moons` (a module on the import path); see moons.yaml.

The contract (proxy_tasks.Task), checked when the config is read:
- `name` and `KNOBS` (the task's own size knobs with cheap defaults; every task also has steps,
  batch, peak, warmup and final: proxy_tasks.COMMON_KNOBS);
- `make_data()`: fixed arrays (the same every call), at least `val_x`, `val_y` and what `batch_of`
  draws from (by default `train_x`, `train_y`); a seed never changes the data;
- `init(key)`: the parameters, a pytree of float32 arrays (a seed sets this and the batch order);
- `loss(params, x, y)` (a scalar) and `metrics(params, x, y)` (mean loss, accuracy), or, for a
  classifier, `logits(params, x)` alone (proxy_tasks.base.Classifier).
"""
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import make_moons

from proxy_tasks.base import Classifier


class Moons(Classifier):
    name = "moons"
    KNOBS = {"width": 16, "n_train": 512, "n_val": 256, "noise": 0.2}
    DEFAULTS = {"steps": 100, "batch": 64}

    def make_data(self):
        x, y = make_moons(self.n_train + self.n_val, noise=self.noise, random_state=0)
        x, y = x.astype(np.float32), y.astype(np.int32)
        return {"train_x": x[:self.n_train], "train_y": y[:self.n_train],
                "val_x": x[self.n_train:], "val_y": y[self.n_train:]}

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return {"w1": jax.random.normal(k1, (2, self.width), jnp.float32) / np.sqrt(2),
                "b1": jnp.zeros((self.width,), jnp.float32),
                "w2": jax.random.normal(k2, (self.width, 2), jnp.float32) / np.sqrt(self.width),
                "b2": jnp.zeros((2,), jnp.float32)}

    def logits(self, params, x):
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        return h @ params["w2"] + params["b2"]
