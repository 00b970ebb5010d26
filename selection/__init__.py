"""Funnel selection: re-evaluate survivors on progressively larger tasks."""
