"""Regularized evolution over optimizer programs, on Ray workers."""
