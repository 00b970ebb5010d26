"""A tiny character-level transformer language model on a corpus generated here (no download).

The corpus is English-like text from a small probabilistic grammar (subject-verb agreement,
adjectives, prepositional phrases, relative clauses, numbers, punctuation), produced by a fixed
seed, so a model has both spelling and syntax to learn. The last 10% is held out for validation.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import nn
from .base import Classifier, register

_DET = ["the", "a", "every", "no", "some", "this", "that", "one"]
_NOUN = ["cat", "dog", "bird", "child", "farmer", "king", "river", "stone", "tree", "ship", "city",
         "teacher", "horse", "star", "garden", "window", "baker", "sailor", "wolf", "queen", "road",
         "lamp", "book", "friend", "storm", "mountain", "village", "machine", "letter", "song"]
_ADJ = ["old", "young", "red", "quiet", "bright", "small", "large", "green", "cold", "happy",
        "strange", "gentle", "dark", "little", "golden", "silent", "wild", "tired", "clever", "brave"]
_VERB_T = ["sees", "finds", "follows", "likes", "builds", "carries", "watches", "remembers",
           "answers", "paints", "helps", "calls", "keeps", "hears", "loves", "leaves"]
_VERB_I = ["sleeps", "sings", "waits", "runs", "laughs", "falls", "shines", "wanders", "rests",
           "listens", "grows", "returns"]
_ADV = ["slowly", "quickly", "again", "today", "softly", "always", "never", "often", "at night",
        "in the morning"]
_PREP = ["near", "under", "behind", "beside", "above", "inside", "across", "towards"]
_NUM = ["two", "three", "four", "five", "seven", "ten", "twelve", "many", "few"]
_CONJ = ["and", "but", "because", "while", "so"]


def _plural(noun: str) -> str:
    if noun == "child":
        return "children"
    if noun == "wolf":
        return "wolves"
    if noun.endswith(("s", "sh", "ch")):
        return noun + "es"
    return noun + "s"


def _plural_verb(verb: str) -> str:
    head, _, rest = verb.partition(" ")
    head = head[:-2] if head.endswith(("ches", "shes", "sses")) else head[:-1]
    if head == "carrie":
        head = "carry"
    return head + (" " + rest if rest else "")


class _Grammar:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def pick(self, xs):
        return xs[int(self.rng.integers(len(xs)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def np(self, depth: int = 0) -> tuple[str, bool]:
        """A noun phrase and whether it is plural."""
        plural = self.chance(0.3)
        noun = self.pick(_NOUN)
        words = [self.pick(_NUM)] if plural else [self.pick(_DET)]
        if plural and self.chance(0.4):
            words = ["the"] + words
        while self.chance(0.35) and len(words) < 4:
            words.append(self.pick(_ADJ))
        words.append(_plural(noun) if plural else noun)
        if depth < 2 and self.chance(0.2):
            inner, _ = self.np(depth + 1)
            words += [self.pick(_PREP), inner]
        if depth < 1 and self.chance(0.15):
            verb, _ = self.vp(plural, depth + 1)
            words += ["that", verb]
        return " ".join(words), plural

    def vp(self, plural: bool, depth: int = 0) -> tuple[str, bool]:
        if self.chance(0.6):
            verb = self.pick(_VERB_T)
            obj, _ = self.np(depth + 1)
            words = [verb, obj]
        else:
            words = [self.pick(_VERB_I)]
        if plural:
            words[0] = _plural_verb(words[0])
        if self.chance(0.3):
            words.append(self.pick(_ADV))
        return " ".join(words), plural

    def clause(self) -> str:
        subj, plural = self.np()
        verb, _ = self.vp(plural)
        return f"{subj} {verb}"

    def sentence(self) -> str:
        s = self.clause()
        if self.chance(0.3):
            s += f", {self.pick(_CONJ)} {self.clause()}"
        end = "?" if self.chance(0.1) else "."
        return s[0].upper() + s[1:] + end

    def text(self, n_chars: int) -> str:
        out, size = [], 0
        while size < n_chars:
            para = " ".join(self.sentence() for _ in range(int(self.rng.integers(2, 6))))
            out.append(para)
            size += len(para) + 1
        return "\n".join(out)[:n_chars]


@functools.lru_cache(maxsize=4)
def corpus(n_chars: int = 200_000, seed: int = 0) -> str:
    """The generated corpus (deterministic for a seed)."""
    return _Grammar(seed).text(n_chars)


@register
class CharLM(Classifier):
    """A causal transformer (`depth` pre-LN blocks of `width`, `heads` heads, learned positions,
    untied output layer) predicting the next character over windows of `context` characters.
    Fitness: validation cross-entropy per character (nats); accuracy is next-character accuracy."""
    name = "char_lm"
    KNOBS = {"width": 64, "depth": 2, "heads": 2, "context": 32, "corpus_chars": 200_000,
             "val_windows": 128, "data_seed": 0}
    DEFAULTS = {"steps": 200, "batch": 32}

    def validate(self):
        if self.width % self.heads or min(self.width, self.depth, self.heads, self.context) < 1:
            raise ValueError(f"task {self.name!r}: heads must divide width; width/depth/heads/context >= 1")
        if self.corpus_chars < 20 * (self.context + 1):
            raise ValueError(f"task {self.name!r}: corpus_chars too small for context {self.context}")

    @functools.cached_property
    def vocab(self) -> str:
        return "".join(sorted(set(corpus(self.corpus_chars, self.data_seed))))

    def make_data(self):
        text = corpus(self.corpus_chars, self.data_seed)
        ids = np.frombuffer(text.encode("ascii"), np.uint8)
        table = np.zeros(256, np.int32)
        table[np.frombuffer(self.vocab.encode("ascii"), np.uint8)] = np.arange(len(self.vocab))
        ids = table[ids]
        cut = int(len(ids) * 0.9)
        train, val = ids[:cut], ids[cut:]
        n_win = min(self.val_windows, (len(val) - 1) // self.context)
        starts = np.linspace(0, len(val) - self.context - 1, n_win).astype(int)
        win = np.stack([val[s:s + self.context + 1] for s in starts])
        return {"train_ids": train, "val_x": win[:, :-1], "val_y": win[:, 1:]}

    def batch_of(self, data, key):
        ids = data["train_ids"]
        starts = jax.random.randint(key, (self.batch,), 0, ids.shape[0] - self.context - 1)
        idx = starts[:, None] + jnp.arange(self.context + 1)
        win = ids[idx]
        return win[:, :-1], win[:, 1:]

    def init(self, key):
        k = jax.random.split(key, self.depth + 3)
        v = len(self.vocab)
        return {"tok": jax.random.normal(k[0], (v, self.width), jnp.float32) * 0.1,
                "pos": jax.random.normal(k[1], (self.context, self.width), jnp.float32) * 0.02,
                "blocks": [nn.block_params(k[3 + i], self.width) for i in range(self.depth)],
                "ln": nn.layer_norm_params(self.width),
                "out": nn.dense(k[2], self.width, v)}

    def logits(self, params, x):
        h = params["tok"][x] + params["pos"][: x.shape[1]]
        for b in params["blocks"]:
            h = nn.block(b, h, self.heads, causal=True)
        return nn.apply_dense(params["out"], nn.layer_norm(params["ln"], h))
