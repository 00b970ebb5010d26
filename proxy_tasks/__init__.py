"""Proxy tasks: small JAX training loops, compiled once, that score optimizer programs."""
