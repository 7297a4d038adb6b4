"""Hostile spec files: encodings, bounds on nesting and numbers, steps, terminal safety, imports.

Each case goes through the command line and must end in exit 0 or 2 with a one-line message at
`file:line:col` (or naming the file), never a traceback, a hang, or a silent change of meaning.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from hypodsl.cli import main
from hypodsl.parser import MAX_DIGITS, MAX_NESTING
from hypodsl.sources import MAX_SPEC_BYTES
from tests.unit.test_checks import REFERENCE_SIGNATURE

PRELUDE = 'study "S"\nprobe iid = split test_iid n 64\n'


def claim(expression: str, when: str = "at final") -> str:
    return PRELUDE + f'claim c "x" {{\n  {when} on iid:\n    {expression}\n}}\n'


def cli(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def sig(tmp_path: Path) -> Path:
    path = tmp_path / "signature.json"
    path.write_text(json.dumps(REFERENCE_SIGNATURE))
    return path


def spec_file(tmp_path: Path, content: str | bytes, name: str = "s.hyp") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- encodings ---------------------------------------------------------------------------


def test_bytes_that_are_not_utf8_are_an_error_at_their_line_and_column(tmp_path, sig):
    path = spec_file(tmp_path, claim("accuracy > 0.5").encode().replace(b"accuracy", b"acc\xffy"))
    for command in (["check", path, "--signature", sig], ["fmt", "--stdout", path]):
        code, _, err = cli(*command)
        assert code == 2
        assert err.startswith(f"{path}:5:8: byte 0xff is not UTF-8 text")


def test_bytes_that_are_not_utf8_in_an_imported_file_name_that_file(tmp_path, sig):
    spec_file(tmp_path, b"probe other = split heldout n 8\n# caf\xe9\n", "shared.hyp")
    path = spec_file(tmp_path, 'import "shared.hyp"\n' + claim("accuracy > 0.5"))
    code, _, err = cli("check", path, "--signature", sig)
    assert code == 2
    assert err.startswith(f"{tmp_path / 'shared.hyp'}:2:6: byte 0xe9 is not UTF-8 text")


def test_a_byte_order_mark_is_accepted(tmp_path, sig):
    path = spec_file(tmp_path, b"\xef\xbb\xbf" + claim("accuracy > 0.5").encode())
    assert cli("check", path, "--signature", sig)[0] == 0


# --- nesting and sums --------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["-" * 5000 + "accuracy > 0", "|" * 300 + "accuracy" + "|" * 300 + " > 0",
     "accuracy" + " * 2" * 300 + " > 0", "(1 + " * 100 + "accuracy" + ")" * 100 + " > 0"],
    ids=["unary", "abs", "product", "bracketed-sums"],
)  # fmt: skip
def test_deep_nesting_is_refused_with_its_position(tmp_path, sig, expression):
    code, _, err = cli("check", spec_file(tmp_path, claim(expression)), "--signature", sig)
    assert code == 2
    assert f"expression nested more than {MAX_NESTING} deep" in err
    assert ":5:" in err.splitlines()[0]


def test_nesting_at_the_bound_checks_and_plans(tmp_path, sig):
    path = spec_file(tmp_path, claim("-" * MAX_NESTING + "accuracy > -1"))
    assert cli("check", path, "--signature", sig)[0] == 0
    assert cli("plan", "--json", path, "--signature", sig)[0] == 0


def test_a_3000_term_sum_checks_plans_and_formats(tmp_path, sig):
    path = spec_file(tmp_path, claim(" + ".join(["accuracy"] * 3000) + " > 0"))
    assert cli("check", path, "--signature", sig)[0] == 0
    code, out, _ = cli("plan", "--json", path, "--signature", sig)
    assert code == 0
    assert len(json.loads(out)["claims"][0]["predictions"][0]["left"]["terms"]) == 3000
    code, formatted, _ = cli("fmt", "--stdout", path)
    assert code == 0 and formatted.count("accuracy") == 3000


# --- numbers -----------------------------------------------------------------------------

HUGE = "9" * 5000


@pytest.mark.parametrize(
    "text",
    [
        PRELUDE.replace("n 64", f"n {HUGE}"),
        PRELUDE.replace("n 64", f"n 64 seed {HUGE}"),
        PRELUDE + f"window w = {HUGE} .. 2\n",
        PRELUDE + f"window w = 1 .. {HUGE}\n",
        PRELUDE + f"path p = L{HUGE}.H0 -> unembed\n",
        PRELUDE + f"path p = L0.H{HUGE} -> unembed\n",
        PRELUDE + f"path p = L0.mlp[1, {HUGE}] -> unembed\n",
        claim("accuracy > 0", when=f"at {HUGE}"),
    ],
    ids=["n", "seed", "window-start", "window-end", "layer", "head", "neuron", "step"],
)
def test_whole_numbers_past_the_digit_bound_are_refused(tmp_path, sig, text):
    code, _, err = cli("check", spec_file(tmp_path, text), "--signature", sig)
    assert code == 2
    assert f"has 5000 digits; at most {MAX_DIGITS}" in err
    assert HUGE not in err  # the message shows the number shortened


@pytest.mark.parametrize(
    "text",
    [
        claim("accuracy > 1e400"),
        claim(f"accuracy > {HUGE}"),
        claim("accuracy with patch(L1.H2, from=1e400) > 0"),
        claim("attention(L1.H2, from=answer, to=match_value) * 1e999 > 0"),
        'study "S"\nconfidence 1e400\n',
    ],
    ids=["comparison", "long-integer", "argument", "product", "confidence"],
)
def test_numbers_a_float_cannot_hold_are_refused_wherever_a_number_goes(tmp_path, sig, text):
    path = spec_file(tmp_path, text)
    for command in (["check", path, "--signature", sig], ["fmt", "--stdout", path]):
        code, _, err = cli(*command)
        assert code == 2
        assert "is too large (a float holds at most about 1.8e308)" in err


def test_fmt_keeps_tiny_and_large_finite_numbers_valid_and_equal(tmp_path, sig):
    path = spec_file(tmp_path, claim("accuracy * 1e-400 + 1.5e300 - 123456789012345678 > 1e-7"))
    code, formatted, _ = cli("fmt", "--stdout", path)
    assert code == 0
    again = spec_file(tmp_path, formatted, "again.hyp")
    assert cli("check", again, "--signature", sig)[0] == 0
    plan = json.loads(cli("plan", "--json", path, "--signature", sig)[1])
    plan_again = json.loads(cli("plan", "--json", again, "--signature", sig)[1])
    assert (
        plan["claims"][0]["predictions"][0]["left"]
        == (plan_again["claims"][0]["predictions"][0]["left"])
    )


# --- steps -------------------------------------------------------------------------------


def test_a_patch_step_that_is_not_a_whole_number_is_an_error_not_step_10(tmp_path, sig):
    text = claim("accuracy with patch(L1.H2, from=10.7) > 0")
    code, _, err = cli("check", spec_file(tmp_path, text), "--signature", sig)
    assert code == 2
    assert "a step is a whole number; `10.7` is not" in err


def test_an_at_step_that_is_not_a_whole_number_is_a_syntax_error(tmp_path, sig):
    path = spec_file(tmp_path, claim("accuracy > 0", when="at 10.7"))
    code, _, err = cli("check", path, "--signature", sig)
    assert code == 2 and ":4:8:" in err


# --- what reaches the terminal -----------------------------------------------------------


def test_control_characters_in_messages_are_escaped(tmp_path, sig):
    path = spec_file(tmp_path, PRELUDE + 'claim c\x1b[2J "x" {\n}\n')
    code, _, err = cli("check", path, "--signature", sig)
    assert code == 2
    assert "\x1b" not in err and "`\\x1b`" in err


def test_rich_markup_in_titles_statements_and_file_names_is_printed_literally(tmp_path, sig):
    text = 'study "[bold red]Title[/]"\nprobe iid = split test_iid n 64\n'
    text += 'claim c "[link=x]y[/link] \\x1b[2J" {\n  at final on iid: accuracy > 0\n}\n'
    path = spec_file(tmp_path, text, "[red]name.hyp")
    code, out, _ = cli("check", path, "--signature", sig)
    assert code == 0 and "[red]name.hyp: ok" in out
    code, out, _ = cli("plan", path, "--signature", sig)
    assert code == 0
    assert "[bold red]Title[/]" in out and "[link=x]y[/link] \\x1b[2J" in out
    assert "\x1b" not in out


# --- imports -----------------------------------------------------------------------------


def test_importing_proc_environ_is_refused_unread(tmp_path, sig, monkeypatch):
    monkeypatch.setenv("HYPO_SECRET_FOR_TEST", "do-not-print-me")
    for target in ("/proc/self/environ", "/dev/zero", "/etc/hostname"):
        path = spec_file(tmp_path, f'import "{target}"\n' + claim("accuracy > 0"))
        code, out, err = cli("check", path, "--signature", sig)
        assert code == 2, target
        assert f"{path}:1:1: cannot import `{target}`" in err
        assert "do-not-print-me" not in out + err


def test_a_link_named_hyp_to_a_system_file_is_refused(tmp_path, sig):
    (tmp_path / "env.hyp").symlink_to("/proc/self/environ")
    path = spec_file(tmp_path, 'import "env.hyp"\n' + claim("accuracy > 0"))
    code, _, err = cli("check", path, "--signature", sig)
    assert code == 2 and "holds system files, not specs" in err


def test_a_fifo_is_refused_without_blocking(tmp_path, sig):
    fifo = tmp_path / "pipe.hyp"
    os.mkfifo(fifo)
    path = spec_file(tmp_path, 'import "pipe.hyp"\n' + claim("accuracy > 0"))
    results: list[tuple[int, str, str]] = []

    def both() -> None:
        results.extend([cli("check", path, "--signature", sig), cli("check", fifo)])

    worker = threading.Thread(target=both, daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert time.monotonic() - start < 10
    (code, _, err), (code_top, _, err_top) = results
    assert code == 2 and "not a regular file (a FIFO)" in err
    assert code_top == 2 and "not a regular file (a FIFO)" in err_top


def test_a_directory_and_an_oversized_file_are_refused(tmp_path, sig):
    (tmp_path / "dir.hyp").mkdir()
    big = tmp_path / "big.hyp"
    big.write_bytes(b"# " + b"x" * MAX_SPEC_BYTES + b"\n")
    refusals = (("dir.hyp", "not a regular file (a directory)"), ("big.hyp", "larger than 4 MB"))
    for name, why in refusals:
        path = spec_file(tmp_path, f'import "{name}"\n' + claim("accuracy > 0"))
        code, _, err = cli("check", path, "--signature", sig)
        assert code == 2 and why in err, err
    code, _, err = cli("check", big, "--signature", sig)
    assert code == 2 and "larger than 4 MB" in err


def test_an_imported_file_must_be_a_hyp_spec(tmp_path, sig):
    (tmp_path / "notes.txt").write_text("secret line that must not be echoed\n")
    path = spec_file(tmp_path, 'import "notes.txt"\n' + claim("accuracy > 0"))
    code, _, err = cli("check", path, "--signature", sig)
    assert code == 2 and "an imported file must be a `.hyp` spec" in err
    assert "secret line" not in err


# --- scale -------------------------------------------------------------------------------


def test_check_time_grows_linearly_with_the_number_of_claims():
    """Parse + check + compile of 2,000 and 8,000 generated claims, in process CPU time (the
    machines are shared): linear growth is 4x; the quadratic `source_text` of before (35 s at
    16,000 claims) made it about 9x."""
    from benchmarks.parse_check import SIGNATURE, generate
    from hypodsl.compiler import compile_spec
    from hypodsl.parser import parse

    def cpu_seconds(n_claims: int) -> float:
        text = generate(n_claims)
        start = time.process_time()
        plan = compile_spec(parse(text, "generated.hyp"), text, SIGNATURE)
        assert len(plan.claims) == n_claims
        return time.process_time() - start

    cpu_seconds(50)  # build the parser once
    small = min(cpu_seconds(2000) for _ in range(2))
    large = min(cpu_seconds(8000) for _ in range(2))
    assert large / small < 6, (small, large)
