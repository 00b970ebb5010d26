"""Tiny neural-network building blocks in plain JAX (pytrees of dicts; no framework)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def dense(key, n_in: int, n_out: int, scale: float = 1.0):
    """A linear layer, fan-in scaled normal weights and zero bias."""
    w = jax.random.normal(key, (n_in, n_out), jnp.float32) * (scale / jnp.sqrt(n_in))
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def apply_dense(p, x):
    return x @ p["w"] + p["b"]


def layer_norm_params(d: int):
    return {"g": jnp.ones((d,), jnp.float32), "b": jnp.zeros((d,), jnp.float32)}


def layer_norm(p, x, eps: float = 1e-5):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * p["g"] + p["b"]


def block_params(key, d: int, mlp_ratio: int = 2):
    k = jax.random.split(key, 4)
    return {"ln1": layer_norm_params(d), "qkv": dense(k[0], d, 3 * d), "proj": dense(k[1], d, d),
            "ln2": layer_norm_params(d), "fc1": dense(k[2], d, mlp_ratio * d), "fc2": dense(k[3], mlp_ratio * d, d)}


def attention(p, x, heads: int, causal: bool):
    b, t, d = x.shape
    qkv = apply_dense(p["qkv"], x).reshape(b, t, 3, heads, d // heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (b, t, h, dh)
    att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(d // heads).astype(x.dtype)
    if causal:
        mask = jnp.tril(jnp.ones((t, t), bool))
        att = jnp.where(mask, att, -1e9)
    att = jax.nn.softmax(att, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, t, d)
    return apply_dense(p["proj"], out)


def block(p, x, heads: int, causal: bool = False):
    """A pre-LN transformer block."""
    x = x + attention(p, layer_norm(p["ln1"], x), heads, causal)
    h = jax.nn.gelu(apply_dense(p["fc1"], layer_norm(p["ln2"], x)))
    return x + apply_dense(p["fc2"], h)
