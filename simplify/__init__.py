"""Simplification: from a raw discovered program to its essence."""
