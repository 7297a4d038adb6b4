"""Train a tiny GPT-2 with Hugging Face transformers on an induction task, saving a checkpoint
series as `Trainer` does (`checkpoint-STEP/` with config.json and model.safetensors), and write
the task's files (`task/task.json` and one `SPLIT.jsonl` per probe split).

Nothing in hypodsl was built for this task: the run directory comes from `hypo import`:

    python examples/induction/train_gpt2.py --out runs/induction_hf
    hypo import runs/induction_hf/checkpoints --task runs/induction_hf/task --out runs/induction
    hypo run specs/induction.hyp --run runs/induction --report reports

A sequence is BOS, a random prefix, a segment of L distinct tokens (L from 3 to 10), random
filler, then the segment again; the lengths vary, so the answer is at no fixed offset. In the
second copy the next token can be read off the first: at the second occurrence of token t, the
answer is the token after t's first occurrence. The classic circuit for this is a
previous-token head in layer 0 and, in layer 1, an induction head that attends from the second
occurrence to the token after the first and copies it. The example's roles name the positions
involved: `answer` (scored), `earlier` (the same token's first occurrence), `after_earlier`
(the token after it), `three_after` (three after it) and `previous` (the position before).
`three_after` was added after looking at the trained model (specs/induction.hyp says why).

Training needs transformers (`pip install -e '.[interop]'`); about 80 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

BOS = 0
VOCAB = 48  # BOS and 47 content tokens
HALVES = (3, 10)  # L, the tokens in each copy, is drawn from this range per sequence
PREFIX, FILLER = 8, 6  # at most this many random tokens before the first copy and between
N_CTX = 40
PROBE_SPLITS = {"discover": 1, "test": 2}  # split -> generator seed (training uses seed 0)


@dataclass(frozen=True)
class Sample:
    tokens: list[int]
    first: int  # where the first copy of the segment starts
    second: int  # where the second copy starts
    length: int  # L


def samples(generator: torch.Generator, n: int) -> list[Sample]:
    """n sequences: BOS, a random prefix, a segment A of distinct tokens, random filler, A again.

    The lengths of the prefix, A and the filler vary, and prefix and filler avoid A's tokens, so
    the only way to predict inside the second A is to find the current token's earlier
    occurrence by content and read the token after it.
    """

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    out = []
    for _ in range(n):
        length, before, between = draw(*HALVES), draw(0, PREFIX), draw(0, FILLER)
        order = (torch.randperm(VOCAB - 1, generator=generator) + 1).tolist()
        segment, others = order[:length], order[length:]
        filler = [others[draw(0, len(others) - 1)] for _ in range(before + between)]
        tokens = [BOS, *filler[:before], *segment, *filler[before:], *segment]
        out.append(Sample(tokens, 1 + before, 1 + before + length + between, length))
    return out


def task_lines(batch: list[Sample]) -> list[str]:
    """One task-file line per sequence: every position of the second copy but its last."""
    lines = []
    for x in batch:
        examples = [
            {
                "position": x.second + k,
                "target": x.tokens[x.second + k + 1],
                "roles": {
                    "earlier": x.first + k,
                    "after_earlier": x.first + k + 1,
                    "three_after": x.first + k + 3,
                    "previous": x.second + k - 1,
                },
            }
            for k in range(x.length - 1)
        ]
        lines.append(json.dumps({"tokens": x.tokens, "examples": examples}))
    return lines


def batch_of(batch: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded input ids, and labels that score only the second copy's next tokens."""
    width = max(len(x.tokens) for x in batch)
    ids = torch.full((len(batch), width), BOS)
    labels = torch.full((len(batch), width), -100)
    for row, x in enumerate(batch):
        ids[row, : len(x.tokens)] = torch.tensor(x.tokens)
        labels[row, x.second + 1 : len(x.tokens)] = torch.tensor(x.tokens[x.second + 1 :])
    return ids, labels


def write_task(out: Path, n_probe: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split, seed in PROBE_SPLITS.items():
        lines = task_lines(samples(torch.Generator().manual_seed(seed), n_probe))
        (out / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    spec = {
        "name": "induction",
        "vocab_size": VOCAB,
        "pad": BOS,
        "token_names": ["BOS", *(f"t{i}" for i in range(1, VOCAB))],
        "roles": ["earlier", "after_earlier", "three_after", "previous"],
        "splits": list(PROBE_SPLITS),
    }
    (out / "task.json").write_text(json.dumps(spec, indent=2) + "\n")


def train(out: Path, steps: int, every: int, batch: int, seed: int, lr: float) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=N_CTX, n_embd=64, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new",
        bos_token_id=BOS, eos_token_id=BOS,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    data = torch.Generator().manual_seed(seed)
    for step in range(steps + 1):
        if step % every == 0:
            model.save_pretrained(out / f"checkpoint-{step}", safe_serialization=True)
        if step == steps:
            break
        tokens, labels = batch_of(samples(data, batch))
        loss = model(input_ids=tokens, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0:
            print(f"step {step:5d}  loss {loss.item():.3f}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for checkpoints/ and task/")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--every", type=int, default=25, help="checkpoint every N steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--probe", type=int, default=256, help="sequences per probe split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    write_task(out / "task", args.probe)
    train(out / "checkpoints", args.steps, args.every, args.batch, args.seed, args.lr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
