"""Fault injection at `hypo import` and `hypo export`: every hostile file or argument is a
one-line error naming the file, exit 2, before anything heavy is done or written — never a
traceback, a hang (FIFOs), an allocation the machine cannot hold, or a silent drop — and a
refused command writes nothing outside its output directory and leaves no partial output."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from hypodsl.cli import main
from runner.model import checkpoints
from runner.model.hf_gpt2 import hf_config
from tests.integration.fault_helpers import (
    CFG,
    LINE,
    hf_tensors,
    refused,
    write_checkpoint,
    write_series,
    write_task,
)

# Seeded fuzz cases: 1,500 in the suite, more with `make fuzz` (HYPO_FUZZ_CASES).
FUZZ_CASES = int(os.environ.get("HYPO_FUZZ_CASES", "1500"))

FIRST = "checkpoint-0"


def import_args(source: Path, task: Path, out: Path) -> list[str]:
    return ["import", str(source), "--task", str(task), "--out", str(out)]


def write_config(**fields: object):
    def change(series: Path) -> None:
        path = series / FIRST / "config.json"
        config = json.loads(path.read_text())
        for key, value in fields.items():
            if value is DELETE:
                config.pop(key)
            else:
                config[key] = value
        path.write_text(json.dumps(config))

    return change


DELETE = object()


def config_bytes(data: bytes):
    return lambda series: (series / FIRST / "config.json").write_bytes(data)


def weights_bytes(data: bytes):
    return lambda series: (series / FIRST / "model.safetensors").write_bytes(data)


def tensors(edit):
    def change(series: Path) -> None:
        found = hf_tensors()
        edit(found)
        (series / FIRST / "model.safetensors").write_bytes(save(found))

    return change


def header(edit):
    """Rewrite the weights file's JSON header (`edit` mutates the parsed dict), data kept."""

    def change(series: Path) -> None:
        path = series / FIRST / "model.safetensors"
        blob = path.read_bytes()
        n = int.from_bytes(blob[:8], "little")
        parsed = json.loads(blob[8 : 8 + n])
        text = edit(parsed) or json.dumps(parsed)
        raw = text.encode()
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + blob[8 + n :])

    return change


def fifo(name: str):
    def change(series: Path) -> None:
        path = series / FIRST / name
        path.unlink()
        os.mkfifo(path)

    return change


def link_to(name: str, target: str):
    def change(series: Path) -> None:
        path = series / FIRST / name
        path.unlink()
        path.symlink_to(target)

    return change


def directory_for(name: str):
    def change(series: Path) -> None:
        path = series / FIRST / name
        path.unlink()
        path.mkdir()

    return change


def missing(name: str):
    return lambda series: (series / FIRST / name).unlink()


def set_tensor(name: str, value):
    return tensors(lambda t: t.__setitem__(name, value(t)))


def poison(value: float):
    def edit(t):
        wte = t["transformer.wte.weight"].clone()
        wte[3, 2] = value
        t["transformer.wte.weight"] = wte

    return tensors(edit)


def extra_checkpoint(name: str, cfg=CFG):
    return lambda series: write_checkpoint(series / name, cfg)


def a_file(name: str):
    return lambda series: (series / name).write_text("not a checkpoint")


def entry(name: str, **fields):
    return header(lambda h: h[name].update(fields))


WTE = "transformer.wte.weight"
CONFIG, WEIGHTS = f"{FIRST}/config.json", f"{FIRST}/model.safetensors"
DEEP = b"[" * 100_000

IMPORT_CASES = {
    # files that would block, never end, or are not files
    "config is a FIFO": (fifo("config.json"), f"{CONFIG}: not a regular file"),
    "weights are a FIFO": (fifo("model.safetensors"), f"{WEIGHTS}: safetensors file is not a"),
    "config links to /dev/zero": (link_to("config.json", "/dev/zero"), f"{CONFIG}: not a regular"),
    "weights link to /dev/zero": (link_to("model.safetensors", "/dev/zero"), WEIGHTS),
    "config links to /proc": (link_to("config.json", "/proc/self/status"), CONFIG),
    "config is a directory": (directory_for("config.json"), f"{CONFIG}: not a regular file"),
    "weights are a directory": (directory_for("model.safetensors"), WEIGHTS),
    "config missing": (missing("config.json"), f"{CONFIG}: no such file"),
    "weights missing": (missing("model.safetensors"), f"{WEIGHTS}: safetensors file missing"),
    "config dangling link": (link_to("config.json", "/nonexistent/x"), CONFIG),
    # config.json's bytes
    "config larger than 1 MiB": (config_bytes(b" " * (2 << 20) + b"{}"), f"{CONFIG}: larger"),
    "config not UTF-8": (config_bytes(b'{"a": "\xff"}'), f"{CONFIG}: not UTF-8"),
    "config not JSON": (config_bytes(b"{"), f"{CONFIG}:1:2: invalid JSON"),
    "config an array": (config_bytes(b"[]"), f"{CONFIG}: not a JSON object"),
    "config nested deeply": (config_bytes(DEEP), CONFIG),
    "config empty": (config_bytes(b""), CONFIG),
    # config.json's fields
    "width huge": (write_config(n_embd=1_000_000, n_head=1), "parameters; import reads models"),
    "vocabulary huge": (write_config(vocab_size=10**12), "parameters; import reads models"),
    "layers huge": (write_config(n_layer=10**6), "at most 1024 layers"),
    "positions huge": (write_config(n_positions=10**6), "attention masks"),
    "inner width huge": (write_config(n_inner=10**9), "parameters"),
    "width zero": (write_config(n_embd=0), "n_embd 0 is not a positive whole number"),
    "heads negative": (write_config(n_head=-2), "n_head -2 is not a positive"),
    "heads do not divide": (write_config(n_head=3), "n_head 3 does not divide n_embd 8"),
    "width true": (write_config(n_embd=True), "n_embd True is not a positive"),
    "width a float": (write_config(n_embd=8.0), "n_embd 8.0 is not a positive"),
    "width a string": (write_config(n_embd="8"), "n_embd '8' is not a positive"),
    "layers missing": (write_config(n_layer=DELETE), "no `n_layer`"),
    "vocabulary null": (write_config(vocab_size=None), "no `vocab_size`"),
    "inner width zero": (write_config(n_inner=0), "n_inner 0 is not a positive"),
    "epsilon NaN": (write_config(layer_norm_epsilon=float("nan")), "layer_norm_epsilon nan"),
    "epsilon negative": (write_config(layer_norm_epsilon=-1e-5), "layer_norm_epsilon"),
    "epsilon true": (write_config(layer_norm_epsilon=True), "layer_norm_epsilon True"),
    "not GPT-2": (write_config(model_type="bert"), "only GPT-2 checkpoints are read"),
    "model type missing": (write_config(model_type=DELETE), "only GPT-2"),
    "ReLU": (write_config(activation_function="relu"), "activation_function 'relu'"),
    "cross-attention": (write_config(add_cross_attention=True), "add_cross_attention True"),
    "untied embeddings": (write_config(tie_word_embeddings=False), "tie_word_embeddings False"),
    # the weights' header
    "weights empty": (weights_bytes(b""), f"{WEIGHTS}: not a safetensors file (0 bytes"),
    "header length huge": (weights_bytes(b"\xff" * 8 + b"{}"), f"{WEIGHTS}: not a safetensors"),
    "header past the end": (weights_bytes((1000).to_bytes(8, "little") + b"{}"), WEIGHTS),
    "header not JSON": (weights_bytes((4).to_bytes(8, "little") + b"{{{{"), "header is not JSON"),
    "header an array": (weights_bytes((2).to_bytes(8, "little") + b"[]"), "not a JSON object"),
    "header nested deeply": (weights_bytes(len(DEEP).to_bytes(8, "little") + DEEP), WEIGHTS),
    "header not UTF-8": (weights_bytes((2).to_bytes(8, "little") + b"\xff\xfe"), "not JSON"),
    "tensor named twice": (
        header(lambda h: json.dumps(h)[:-1] + f', "{WTE}": ' + json.dumps(h[WTE]) + "}"),
        "appears twice",
    ),
    "unknown dtype": (entry(WTE, dtype="F99"), f"{WEIGHTS}: tensor `{WTE}`: unknown dtype"),
    "offsets outside the file": (entry(WTE, data_offsets=[0, 10**12]), "do not hold"),
    "offsets reversed": (entry(WTE, data_offsets=[512, 0]), "do not hold"),
    "shape negative": (entry(WTE, shape=[-16, 8]), "is not a list of sizes"),
    "shape of booleans": (entry(WTE, shape=[True, 8]), "is not a list of sizes"),
    "shape disagrees with bytes": (entry(WTE, shape=[16, 9]), "do not hold"),
    "entry without offsets": (
        header(lambda h: h[WTE].pop("data_offsets") and None),
        "needs exactly",
    ),
    # the weights against the config
    "integer weights": (set_tensor(WTE, lambda t: t[WTE].to(torch.int64)), "floating point"),
    "int32 weights": (set_tensor(WTE, lambda t: t[WTE].to(torch.int32)), "is I32"),
    "boolean weights": (set_tensor(WTE, lambda t: t[WTE] > 0), "is BOOL"),
    "transposed embedding": (set_tensor(WTE, lambda t: t[WTE].t().contiguous()), "implies [16, 8]"),
    "tensor missing": (tensors(lambda t: t.pop("transformer.ln_f.bias")), "no tensor `transf"),
    "cross-attention tensor": (
        set_tensor("transformer.h.0.crossattention.c_attn.weight", lambda t: torch.zeros(8, 24)),
        "is not part of a GPT-2 model of this config",
    ),
    "a layer too many": (
        set_tensor("transformer.h.1.ln_1.weight", lambda t: torch.ones(8)),
        "`transformer.h.1.ln_1.weight` is not part",
    ),
    "untied head": (set_tensor("lm_head.weight", lambda t: t[WTE] + 1), "is not tied"),
    "head of another shape": (
        set_tensor("lm_head.weight", lambda t: t[WTE][:15].clone()),
        "lm_head",
    ),
    "NaN weights": (poison(float("nan")), f"{WEIGHTS}: tensor `{WTE}` holds NaN or Inf"),
    "infinite weights": (poison(float("inf")), "holds NaN or Inf"),
    # the series
    "step written twice": (extra_checkpoint("checkpoint-010"), "are both step 10"),
    "step zero-padded": (extra_checkpoint("checkpoint-00"), "are both step 0"),
    "shape changes": (
        extra_checkpoint("checkpoint-20", CFG.model_copy(update={"d_ff": 32})),
        "different model configs: d_ff is 16 in checkpoint-0 and 32 in checkpoint-20",
    ),
    "checkpoint is a file": (a_file("checkpoint-5"), "checkpoint-5: not a directory"),
    "step of 13 digits": (extra_checkpoint("checkpoint-1234567890123"), "more than 12 digits"),
}


@pytest.mark.parametrize("change", list(IMPORT_CASES), ids=list(IMPORT_CASES))
def test_a_hostile_checkpoint_is_refused_in_one_line(tmp_path, capsys, change):
    mutate, message = IMPORT_CASES[change]
    series = write_series(tmp_path / "hf")
    mutate(series)
    task = write_task(tmp_path / "task")
    out = tmp_path / "out"
    started = time.monotonic()
    refused(capsys, import_args(series, task, out), tmp_path, out, message)
    assert time.monotonic() - started < 10


def test_the_good_series_imports(tmp_path, capsys):
    """The cases above differ from this one by one fault each."""
    series = write_series(tmp_path / "hf")
    task = write_task(tmp_path / "task")
    assert main(import_args(series, task, tmp_path / "out")) == 0
    assert checkpoints.list_steps(tmp_path / "out") == [0, 10]


def test_half_precision_weights_and_a_tied_head_import(tmp_path):
    series = tmp_path / "hf"
    found = {k: v.to(torch.bfloat16) for k, v in hf_tensors().items()}
    found["lm_head.weight"] = found[WTE].clone()
    found["transformer.h.0.attn.bias"] = torch.ones(1, 1, 12, 12)  # older transformers' buffer
    write_checkpoint(series / FIRST, tensors=found)
    assert main(import_args(series, write_task(tmp_path / "task"), tmp_path / "out")) == 0


TASK_FIT_CASES = {
    "task vocabulary larger than the model's": (
        {"vocab_size": 17},
        "task.json: vocab_size 17 is larger than the model's (16)",
    ),
    "a sequence longer than the model's context": (
        {"lines": [{"tokens": [*range(10), 1, 2, 3], "examples": []}, None]},
        "held.jsonl:1: 13 tokens, more than the model's context (12)",
    ),
    "ten million tokens": ({"vocab_size": 10_000_000}, "vocab_size 10000000 is larger"),
}


@pytest.mark.parametrize("case", list(TASK_FIT_CASES), ids=list(TASK_FIT_CASES))
def test_a_task_the_model_cannot_read_is_refused_before_writing(tmp_path, capsys, case):
    spec, message = TASK_FIT_CASES[case]
    lines = [x if x is not None else LINE for x in spec.pop("lines", [LINE])]
    task = write_task(tmp_path / "task", lines, **spec)
    out = tmp_path / "out"
    refused(capsys, import_args(write_series(tmp_path / "hf"), task, out), tmp_path, out, message)


def write_listing(tmp_path: Path, text: str) -> Path:
    write_series(tmp_path / "hf")
    listing = tmp_path / "series.json"
    listing.write_text(text)
    return listing


LISTING_CASES = {
    "a step twice": ('{"10": "hf/checkpoint-10", "10": "hf/checkpoint-0"}', "are both step 10"),
    "a step zero-padded": (
        '{"10": "hf/checkpoint-10", "010": "hf/checkpoint-0"}',
        "are both step 10",
    ),
    "a superscript digit": ('{"\u00b2": "hf/checkpoint-0"}', "is not a step"),
    "an Arabic-Indic digit": ('{"\u0661": "hf/checkpoint-0"}', "is not a step"),
    "a negative step": ('{"-1": "hf/checkpoint-0"}', "`-1` is not a step"),
    "a step of 13 digits": ('{"1234567890123": "hf/checkpoint-0"}', "is not a step"),
    "a directory that is a number": ('{"0": 5}', "the directory must be a string"),
    "a missing directory": ('{"0": "hf/nope"}', "is not a directory"),
    "an array": ('[["0", "hf/checkpoint-0"]]', "expected a JSON object"),
    "empty": ("{}", "expected a JSON object"),
    "not JSON": ("{", "not a JSON object"),
    "nested deeply": ("[" * 100_000, "series.json"),
}


@pytest.mark.parametrize("case", list(LISTING_CASES), ids=list(LISTING_CASES))
def test_a_hostile_series_listing_is_refused(tmp_path, capsys, case):
    text, message = LISTING_CASES[case]
    listing = write_listing(tmp_path, text)
    out = tmp_path / "out"
    task = write_task(tmp_path / "task")
    line = refused(capsys, import_args(listing, task, out), tmp_path, out, message)
    assert "series.json" in line


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_series_listing_that_is_not_a_file_is_refused(tmp_path, capsys, kind):
    write_series(tmp_path / "hf")
    listing = tmp_path / "series.json"
    if kind == "fifo":
        os.mkfifo(listing)
    else:
        listing.symlink_to("/dev/zero")
    out = tmp_path / "out"
    task = write_task(tmp_path / "task")
    refused(capsys, import_args(listing, task, out), tmp_path, out, "series.json: checkpoint list")


def test_an_import_over_a_run_or_its_own_data_is_refused(tmp_path, capsys):
    series = write_series(tmp_path / "hf")
    task = write_task(tmp_path / "task")
    run = tmp_path / "run"
    assert main(import_args(series, task, run)) == 0
    refused(capsys, import_args(series, task, run), tmp_path, run, "already holds a run")
    fresh = tmp_path / "fresh"
    args = ["import", str(series), "--data", str(fresh / "data"), "--out", str(fresh)]
    refused(capsys, args, tmp_path, fresh, "the new run's own data directory")


@pytest.fixture(scope="module")
def kv_data(tmp_path_factory, small_arrays) -> Path:
    from runner.kv.dataset import DataConfig, save
    from tests.conftest import SMALL_DATA

    out = tmp_path_factory.mktemp("kv") / "data"
    save(out, DataConfig(seed=3, **SMALL_DATA), small_arrays)
    return out


def copy_data(kv_data: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    for path in kv_data.iterdir():
        (into / path.name).write_bytes(path.read_bytes())
    return into


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (CFG, "146 tokens; the model's vocab_size is 16"),
        (CFG.model_copy(update={"vocab_size": 146}), "at most n_positions 12"),
    ],
    ids=["vocabulary", "context"],
)
def test_kv_data_the_model_cannot_read_is_refused(tmp_path, capsys, kv_data, cfg, message):
    series = write_series(tmp_path / "hf", cfg=cfg)
    data = copy_data(kv_data, tmp_path / "data")
    out = tmp_path / "out"
    args = ["import", str(series), "--data", str(data), "--out", str(out)]
    refused(capsys, args, tmp_path, out, message)


KV_WIDE = CFG.model_copy(update={"vocab_size": 146, "n_ctx": 96})
MANIFEST_CASES = {
    "token_names a number": ({"token_names": 5}, "token_names is not a list"),
    "a config field of another kind": ({"config": {"max_len": "long"}}, "field `max_len`"),
    "an unknown config field": ({"config": {"width": 3}}, "field `width`"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES), ids=list(MANIFEST_CASES))
def test_a_hostile_dataset_manifest_is_refused(tmp_path, capsys, kv_data, case):
    fields, message = MANIFEST_CASES[case]
    series = write_series(tmp_path / "hf", cfg=KV_WIDE)
    data = copy_data(kv_data, tmp_path / "data")
    manifest = json.loads((data / "dataset.json").read_text()) | fields
    (data / "dataset.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    args = ["import", str(series), "--data", str(data), "--out", str(out)]
    line = refused(capsys, args, tmp_path, out, message)
    assert "dataset.json" in line


def test_kv_data_imports_into_a_wide_enough_model(tmp_path, kv_data):
    series = write_series(tmp_path / "hf", cfg=KV_WIDE)
    args = ["import", str(series), "--data", str(kv_data), "--out", str(tmp_path / "out")]
    assert main(args) == 0


def test_a_split_name_cannot_write_outside_the_run(tmp_path, capsys, kv_data):
    series = write_series(tmp_path / "hf", cfg=KV_WIDE)
    data = copy_data(kv_data, tmp_path / "data")
    manifest = json.loads((data / "dataset.json").read_text())
    manifest["sha256"]["../../escaped"] = "0" * 64
    (data / "dataset.json").write_text(json.dumps(manifest))
    (tmp_path / "escaped.safetensors").write_bytes(b"x")
    out = tmp_path / "nest" / "out"
    args = ["import", str(series), "--data", str(data), "--out", str(out)]
    refused(capsys, args, tmp_path, out, "split `../../escaped` is not a name")


# --- export -----------------------------------------------------------------------------------


def export_args(run: Path, out: Path, *extra: str) -> list[str]:
    return ["export", str(run), "--to", "hf", str(out), *extra]


NOT_A_FILE = "exists and is not a file"
EXPORT_CASES = {  # step, the name taken, by what, the error without and with --force
    "config.json is a directory": (
        "final", "config.json", "dir", "config.json: exists; pass --force", NOT_A_FILE,
    ),
    "model.safetensors is a FIFO": (
        "final", "model.safetensors", "fifo", "model.safetensors: exists; pass", NOT_A_FILE,
    ),
    "a checkpoint folder is a file": (
        "all", "checkpoint-0", "file", "checkpoint-0: exists and is not a directory", None,
    ),
    "a checkpoint's config is a directory": (
        "all", "checkpoint-0/config.json", "dir", "checkpoint-0/config.json: exists; pass",
        f"checkpoint-0/config.json: {NOT_A_FILE}",
    ),
    "a stale checkpoint folder": (
        "all", "checkpoint-99999", "dir", "holds checkpoint-99999, which this export", None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("case", list(EXPORT_CASES), ids=list(EXPORT_CASES))
def test_export_refuses_to_clobber(tiny_run, tmp_path, capsys, case, force):
    step, name, kind, plain, forced = EXPORT_CASES[case]
    out = tmp_path / "out"
    path = out / name
    path.parent.mkdir(parents=True)
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("x")
    args = export_args(tiny_run, out, "--step", step, *(["--force"] if force else []))
    refused(capsys, args, tmp_path, out, (forced or plain) if force else plain)


def test_export_force_overwrites_an_earlier_export(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(export_args(tiny_run, out)) == 0
    refused(capsys, export_args(tiny_run, out), tmp_path, out, "pass --force")
    (out / "config.json").write_text("{}")
    assert main(export_args(tiny_run, out, "--force")) == 0
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"


def test_export_into_the_run_itself_is_refused(tiny_run, tmp_path, capsys):
    refused(capsys, export_args(tiny_run, tiny_run, "--force"), tiny_run, tiny_run, "run directory")


# --- fuzz ---------------------------------------------------------------------------------------

VALUES = [0, 1, -1, 2, 3, 8, 16, 10**6, 10**12, 2**63, True, False, None, "8", 8.0, 0.5,
          float("nan"), float("inf"), [], {}, [8], "gpt2", ""]  # fmt: skip


def mutated_config(rng: random.Random) -> bytes:
    config = hf_config(CFG)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice([*config, "n_inner", "add_cross_attention"])
        if rng.random() < 0.15:
            config.pop(key, None)
        else:
            config[key] = rng.choice(VALUES)
    data = json.dumps(config).encode()
    if rng.random() < 0.2:  # a byte-level fault on top
        i = rng.randrange(len(data))
        data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
    return data


def test_fuzzed_hf_configs_end_in_success_or_one_line(tmp_path, capsys):
    rng = random.Random(20240611)
    task = write_task(tmp_path / "task")
    series = write_series(tmp_path / "hf", steps=(0,))
    config = series / FIRST / "config.json"
    outcomes = {0: 0, 2: 0}
    for case in range(FUZZ_CASES):
        config.write_bytes(mutated_config(rng))
        out = tmp_path / f"out{case}"
        started = time.monotonic()
        code = main(import_args(series, task, out))
        err = capsys.readouterr().err
        assert time.monotonic() - started < 10, config.read_bytes()
        assert code in (0, 2) and "Traceback" not in err, (config.read_bytes(), err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and "config.json" in err, err
            assert not out.exists()
        outcomes[code] += 1
    assert outcomes[0] > 5 and outcomes[2] > 50, outcomes  # the fuzz reaches both
