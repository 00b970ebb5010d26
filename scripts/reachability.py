"""How near the Lion family is to the warm start under the search's mutations, without training:
random walks of mutations from the warm start (each step a valid child, as the search draws them),
counting the programs of the family met at each depth.

    python scripts/reachability.py [--config configs/quickstart.yaml] [--walks 20000] [--depth 6]
                                   [--families lion signum] [--seed 1] [--op-change any_arity]

A search on the quickstart trains about a thousand distinct programs; a family met once in tens of
thousands of random programs near the warm start is found by selection, or not at all.
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from tqdm import tqdm

import dsl
from lionsearch.pipeline import load_pipeline
from search.mutation import OP_CHANGES, mutate


def walk_hits(config: str, walks: int, depth: int, families: set[str], seed: int,
              op_change: str | None = None) -> tuple[list[int], int]:
    """Programs of `families` met at each depth 1..depth over `walks` walks, and the number of
    distinct live programs seen (`op_change` overrides the config's search space)."""
    cfg = load_pipeline(config)
    space, mutation = cfg.search_space, cfg.search.mutation
    if op_change:
        space = dataclasses.replace(space, op_change=op_change)
    starts = [dsl.load(n).inline_params() for n in space.warm_start]
    rng = np.random.default_rng(seed)
    hits, names = [0] * depth, {}  # live program text -> family, each program classified once
    for _ in tqdm(range(walks), desc="walks", unit="walk"):
        p = starts[rng.integers(len(starts))]
        for k in range(depth):
            p = mutate(p, rng, mutation, space).program
            live = dsl.strip_dead_code(p)
            key = dsl.to_text(live)
            if key not in names:
                names[key] = dsl.family(live).name
            hits[k] += names[key] in families
    return hits, len(names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--walks", type=int, default=20000)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--families", nargs="+", default=["lion", "signum"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--op-change", choices=OP_CHANGES, help="the search space's op_change (default: the config's)")
    args = ap.parse_args(argv)
    hits, distinct = walk_hits(args.config, args.walks, args.depth, set(args.families), args.seed, args.op_change)
    change = f", op_change {args.op_change}" if args.op_change else ""
    print(f"{args.walks} random walks of {args.depth} mutations from the warm start of {args.config}{change} "
          f"({distinct} distinct live programs)")
    print("| depth | " + " | ".join(str(k) for k in range(1, args.depth + 1)) + " | all |")
    print("|---" * (args.depth + 2) + "|")
    print(f"| {'/'.join(args.families)} programs met | " + " | ".join(map(str, hits)) + f" | {sum(hits)} |")
    total = args.walks * args.depth
    print(f"one in {total / sum(hits):.0f} programs" if sum(hits) else f"none in {total} programs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
