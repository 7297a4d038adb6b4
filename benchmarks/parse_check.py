"""Parse + check time of a generated 1,000-claim spec (target: under 1 s).

    python benchmarks/parse_check.py [--claims N] [--repeats R]

Prints the median of R runs of parse + compile against the reference model's signature, and
each phase separately. Every claim mixes the language's constructs (paths, circuits,
interventions, windows, births), so the spec exercises the whole grammar.
"""

from __future__ import annotations

import argparse
import statistics
import time

from hypodsl.compiler import compile_spec
from hypodsl.parser import parse

SIGNATURE = {
    "model": {"n_layers": 3, "n_heads": 4, "d_model": 128, "d_head": 32, "d_ff": 512},
    "roles": [
        "answer",
        "read_op",
        "match_key",
        "match_value",
        "bos",
        "stale_value",
        "other_key",
        "other_value",
    ],
    "splits": {
        "train": 100000,
        "val_iid": 2048,
        "test_iid": 2048,
        "heldout": 2048,
        "structural_ood": 2048,
        "counterfactual": 2048,
    },
    "checkpoints": [*range(0, 1000, 50), *range(1000, 14001, 250)],
}
HEADER = """study "generated"
probe iid = split test_iid n 512 seed 0
probe heldout = split heldout n 512
probe cf = split counterfactual n 256
window early = 1500 .. 2500
window prebirth = .. before birth(accuracy on heldout > 0.5)
path retrieval = L1.H2[answer <- match_value] -> unembed
path via_mlp = L1.H2[answer <- match_value] -> L2.mlp -> unembed
path direct = embed -> unembed
circuit kv = retrieval + via_mlp
"""
CLAIMS = [
    'claim c{i} "attention" {{\n'
    "  at final on iid: attention(L{l}.H{h}, from=answer, to=match_value) > 0.{d}\n}}",
    'claim c{i} "share" {{\n  at {step} on iid: share(kv) > 0.{d}\n}}',
    'claim c{i} "ablate" {{\n'
    "  at final on iid: accuracy with ablate(L{l}.H{h}, mean) < accuracy - 0.{d}\n}}",
    'claim c{i} "equiv" expect supported {{\n'
    "  at {step} on iid: |accuracy with ablate(L0.mlp[{n}, {m}], zero) - accuracy| < 0.02\n}}",
    'claim c{i} "align" {{\n'
    "  over prebirth (mean) on heldout: alignment(retrieval) > alignment(direct)\n}}",
    'claim c{i} "birth" {{\n'
    "  birth(attention(L{l}.H{h}, from=answer, to=match_value) > 0.5)"
    " before birth(accuracy on heldout > 0.5) on iid\n}}",
    'claim c{i} "patch" {{\n'
    "  at {step} on iid: accuracy with patch(L{l}.H{h}, from=cf) < accuracy - 0.{d}\n}}",
]


def generate(n_claims: int) -> str:
    parts = [HEADER]
    for i in range(n_claims):
        template = CLAIMS[i % len(CLAIMS)]
        parts.append(
            template.format(
                i=i,
                l=i % 3,
                h=i % 4,
                d=1 + i % 9,
                n=i % 512,
                m=(i + 7) % 512,
                step=1000 + 250 * (i % 50),
            )
        )
    return "\n".join(parts) + "\n"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--claims", type=int, default=1000)
    args.add_argument("--repeats", type=int, default=5)
    ns = args.parse_args()
    text = generate(ns.claims)
    parse(text)  # build the parser once, as a long-lived process would
    parse_s, check_s = [], []
    for _ in range(ns.repeats):
        t0 = time.perf_counter()
        spec = parse(text, "generated.hyp")
        t1 = time.perf_counter()
        plan = compile_spec(spec, text, SIGNATURE)
        t2 = time.perf_counter()
        parse_s.append(t1 - t0)
        check_s.append(t2 - t1)
    total = statistics.median(p + c for p, c in zip(parse_s, check_s, strict=True))
    print(f"{len(plan.claims)} claims, {text.count(chr(10))} lines, median of {ns.repeats}:")
    parse_t, check_t = statistics.median(parse_s), statistics.median(check_s)
    print(f"  parse {parse_t:.3f} s  check+compile {check_t:.3f} s  total {total:.3f} s (< 1 s)")


if __name__ == "__main__":
    main()
