"""The stream KV vocabulary: 10 special tokens, 8 keys, 128 values (146 tokens).

Layout (ours, stable): ids 0-9 are specials, 10-17 keys `K00`..`K07`, 18-145 values
`V00`..`V127`. Five specials are in use; five are reserved so that new operations can be added
without changing the vocabulary size (and so the reference model keeps its 626,048 parameters).
"""

from __future__ import annotations

N_KEYS = 8
N_VALUES = 128
SPECIALS = (
    "<pad>",
    "<bos>",
    "<eos>",
    "W",
    "R",
    "<reserved_5>",
    "<reserved_6>",
    "<reserved_7>",
    "<reserved_8>",
    "<reserved_9>",
)
PAD, BOS, EOS, WRITE, READ = range(5)
FIRST_KEY = len(SPECIALS)
FIRST_VALUE = FIRST_KEY + N_KEYS
VOCAB_SIZE = FIRST_VALUE + N_VALUES


def key_token(key: int) -> int:
    return FIRST_KEY + key


def value_token(value: int) -> int:
    return FIRST_VALUE + value


def token_names() -> list[str]:
    """Every token's printable name, indexed by id."""
    keys = [f"K{k:02d}" for k in range(N_KEYS)]
    values = [f"V{v:02d}" for v in range(N_VALUES)]
    return [*SPECIALS, *keys, *values]


def decode(tokens: list[int]) -> str:
    names = token_names()
    return " ".join(names[t] for t in tokens if t != PAD)
