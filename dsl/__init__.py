"""The symbolic optimizer language: programs `train(w, g, m, v, lr) -> (update, m, v)`, with
optionally more memory slots after `v` (`train(w, g, m, v, n, lr) -> (update, m, v, n)`)."""
from .analysis import (Verdict, check, equivalent, fingerprint, follows_lr, live_statements, redundancy, state_slots,
                       strip_dead_code)
from .builtins import builtin_names, load
from .compile import as_optax, optax_factory, tree_update
from .family import Family, equal_slots, equivalent_up_to_constants, family, is_lion, keeps_momentum
from .ops import OP_NAMES, OPS, SEARCH_OPS, Op
from .program import INPUTS, MAX_MEMORY, MEMORY, OUTPUTS, Program, ProgramError, Statement
from .text import parse, to_text

__all__ = [
    "OPS", "OP_NAMES", "SEARCH_OPS", "Op", "INPUTS", "MAX_MEMORY", "MEMORY", "OUTPUTS", "Family", "Program", "ProgramError", "Statement",
    "Verdict", "as_optax", "optax_factory", "builtin_names", "check", "equal_slots", "equivalent", "equivalent_up_to_constants",
    "family", "fingerprint", "follows_lr", "is_lion", "keeps_momentum",
    "load", "parse",
    "live_statements", "redundancy", "state_slots", "strip_dead_code", "to_text", "tree_update",
]
