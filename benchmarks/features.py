"""What features cost: a 10-claim feature study against the same study stated on components.

    python benchmarks/features.py [--run runs/small] [--basis features/l1_resid]
                                  [--repeats 3] [--threads 2]

Both studies measure the same kinds of thing at the same checkpoints and probes: a score, a
direct contribution, a lineage, zero / mean / resample ablations, a patch from a checkpoint, a
gradient alignment, a scoped update alignment and a birth. The feature study states each on a
family of the basis; the component study on a head. Every time is the median of the repeats,
each cold (an empty cache). Target: feature study / component study <= 1.5.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.measure import median_time
from hypodsl.compiler import compile_spec
from hypodsl.parser import parse
from runner.engine.study import run_study
from runner.model.rundir import read_signature

HEADER = """study "cost"
probe iid = split test_iid n 256 seed 0
window late = 2000 ..
"""
FEATURES = (
    HEADER
    + """basis b = "{basis}"
family fam = b[0, 1, 2, 3]
claim c1 "" {{ at final on iid: activation(fam) > 0 }}
claim c2 "" {{ at final on iid: contribution(fam) > 0 }}
claim c3 "" {{ at final on iid: contribution(L0.mlp -> fam) > 0 }}
claim c4 "" {{ at final on iid: accuracy with ablate(fam, zero) < accuracy }}
claim c5 "" {{ at final on iid: accuracy with ablate(fam, mean) < accuracy }}
claim c6 "" {{ at final on iid: accuracy with ablate(fam, resample) < accuracy }}
claim c7 "" {{ at 2000 on iid: accuracy with patch(fam, from=final) > accuracy }}
claim c8 "" {{ at final on iid: alignment(activation(fam)) > 0 }}
claim c9 "" {{ at 2000 on iid: update_alignment(activation(fam), scope=L0.mlp) > 0 }}
claim c10 "" {{ over late (mean) on iid: activation(fam) > 0 }}
"""
)
COMPONENTS = (
    HEADER
    + """path direct = L0.H3 -> unembed
claim c1 "" { at final on iid: attention(L0.H3, from=answer, to=match_value) > 0 }
claim c2 "" { at final on iid: contribution(direct) > 0 }
claim c3 "" { at final on iid: contribution(L0.mlp -> L1.mlp) > 0 }
claim c4 "" { at final on iid: accuracy with ablate(L0.H3, zero) < accuracy }
claim c5 "" { at final on iid: accuracy with ablate(L0.H3, mean) < accuracy }
claim c6 "" { at final on iid: accuracy with ablate(L0.H3, resample) < accuracy }
claim c7 "" { at 2000 on iid: accuracy with patch(L0.H3, from=final) > accuracy }
claim c8 "" { at final on iid: alignment(direct) > 0 }
claim c9 "" { at 2000 on iid: update_alignment(direct) > 0 }
claim c10 "" { over late (mean) on iid: attention(L0.H3, from=answer, to=match_value) > 0 }
"""
)


def cold_seconds(text: str, run: Path) -> float:
    plan = compile_spec(parse(text, "cost.hyp"), text, read_signature(run))
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        result = run_study(plan, [run], cache_dir=Path(cache))
        seconds = time.perf_counter() - start
    failed = [c.name for c in result.claims if "not evaluable" in c.reason]
    if failed:
        raise SystemExit(f"claims not evaluated: {failed}: {result.claims[0].reason}")
    return seconds


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/small")
    parser.add_argument("--basis", default="features/l1_resid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    features = FEATURES.format(basis=args.basis)
    feature_s = median_time(lambda: cold_seconds(features, run), args.repeats)
    component_s = median_time(lambda: cold_seconds(COMPONENTS, run), args.repeats)
    out = {"features_s": feature_s, "components_s": component_s, "ratio": feature_s / component_s}
    print(
        f"10-claim feature study {feature_s:.2f} s, component study {component_s:.2f} s: "
        f"ratio {out['ratio']:.2f} (target <= 1.5), median of {args.repeats}, "
        f"{args.threads} threads"
    )
    return out


if __name__ == "__main__":
    main()
