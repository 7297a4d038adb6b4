"""The command line under hostile spec files: any bytes give exit 0, 1 or 2, never a traceback.

Mutants of the bundled specs, changed at the byte level (bytes that are not UTF-8, a BOM,
control characters, Rich markup, huge and non-finite numbers, deep nesting, long sums, steps
that are not whole numbers, imports of system files), go through `hypo check`, `hypo fmt` and
`hypo plan` in-process. Every spec error must carry `file:line:col`, no input may take 10 s,
and every mutant that checks must still check after `hypo fmt` rewrites it.

CI runs 3,000 mutants; `make fuzz` runs 20,000
(`HYPO_FUZZ_MUTANTS=20000 pytest tests/unit/test_fuzz_cli.py`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import time
from pathlib import Path

from hypodsl.cli import main
from tests.unit.test_checks import REFERENCE_SIGNATURE

SPECS = Path(__file__).resolve().parents[2] / "specs"
MUTANTS = int(os.environ.get("HYPO_FUZZ_MUTANTS", "3000"))
SECONDS_PER_INPUT = 10.0
HOSTILE = [
    *(c.encode() for c in 'abLH0123456789._-><=|(){}[],:#"\\ \n+*/e'),
    b"->", b"<-", b"..", b"claim", b"at", b"over", b"with", b"birth(",
    b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\x00", b"\x1b[2J", b"\x07", b"[bold red]", b"[/]",
    b"1e400", b"9" * 5000, b"0." + b"0" * 500 + b"1", b"from=10.7", b"at 10.7",
    b"-" * 300, b"|" * 200, b"(" * 100, b" + accuracy" * 300,
    b'import "/proc/self/environ"\n', b'import "/dev/zero"\n', b'import "missing.hyp"\n',
]  # fmt: skip
POSITION = re.compile(r"^\S.*?:\d+:\d+: ", re.M)


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(out) + 1)
        action = rng.random()
        if action < 0.35 and out:
            del out[min(i, len(out) - 1)]
        elif action < 0.85:
            out[i:i] = rng.choice(HOSTILE)
        elif out:
            j, k = rng.randrange(len(out)), min(i, len(out) - 1)
            out[k], out[j] = out[j], out[k]
    return bytes(out)


def run_cli(args: list[str]) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)  # an exception here fails the test with the input below
    return code, err.getvalue(), time.perf_counter() - start


def assert_fmt_keeps_it_valid(spec: Path, signature: Path, n: int) -> None:
    """`hypo fmt` never turns a valid spec into an invalid one, and formats to a fixed point."""
    code, _, _ = run_cli(["fmt", str(spec)])
    assert code == 0, n
    formatted = spec.read_text()
    code, err, _ = run_cli(["check", str(spec), "--signature", str(signature)])
    assert code == 0, (n, err[:300], formatted[:300])
    run_cli(["fmt", str(spec)])
    assert spec.read_text() == formatted, n


def test_mutated_spec_bytes_never_traceback_hang_or_lose_their_position(tmp_path: Path):
    signature = tmp_path / "signature.json"
    signature.write_text(json.dumps(REFERENCE_SIGNATURE))
    seeds = [p.read_bytes() for p in sorted(SPECS.glob("*.hyp"))]
    rng = random.Random(20261125)
    spec = tmp_path / "mutant.hyp"
    codes: dict[int, int] = {}
    for n in range(MUTANTS):
        data = mutate(rng, rng.choice(seeds))
        spec.write_bytes(data)
        for args in (
            ["check", str(spec), "--signature", str(signature)],
            ["fmt", "--stdout", str(spec)],
            ["plan", "--json", str(spec), "--signature", str(signature)],
        ):
            try:
                code, err, seconds = run_cli(args)
            except BaseException as e:
                raise AssertionError(f"mutant {n} ({args[0]}): {type(e).__name__}: {data!r}") from e
            assert code in (0, 1, 2), (n, args[0], code)
            assert seconds < SECONDS_PER_INPUT, (n, args[0], seconds, data)
            if code == 2:
                assert POSITION.search(err), (n, args[0], err[:300], data)
            assert "\x1b" not in err, (n, args[0], err[:300])
            codes[code] = codes.get(code, 0) + 1
            if args[0] == "check" and code == 0:
                assert_fmt_keeps_it_valid(spec, signature, n)
    assert codes.get(2, 0) > 0 and codes.get(0, 0) > 0  # the mutants reach both outcomes
