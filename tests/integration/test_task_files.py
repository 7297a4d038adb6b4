"""Task files (`runner.task`): a checkpoint series imported with `--task` instead of `--data`.

Ground truth: the stream-KV test split written as a task file (its reads as examples, its roles
as the task's roles) must give the same results as the KV run itself, claim for claim, for every
kind of quantity the spec below measures. Bad task files are one-line errors naming file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hypodsl.cli import main
from hypodsl.errors import UserError
from runner.kv import dataset, vocab
from runner.kv.roles import SET_ROLES, SINGLE_ROLES
from runner.model.rundir import data_dir, read_signature
from runner.task.taskfile import TaskError, read_spec, task_schema, write_task_data

ROOT = Path(__file__).resolve().parents[2]

SPEC = """study "the same claims on the KV run and on its task file"
probe iid = split test_iid n 24 seed 0
path l0h0 = L0.H0 -> unembed
claim acc "accuracy" { at final on iid: accuracy > 0.1 }
claim margin "margin at the start" { at first on iid: margin < 0 }
claim look "attention" { at final on iid: attention(L1.H0, from=answer, to=match_value) > 0.2 }
claim gap "qk gap" {
  at final on iid: qk_gap(L1.H0, from=answer, to=match_value, contrast=stale_value) > 0
}
claim copy "ov copy" { at final on iid: ov_copy(L1.H0) > 0.2 }
claim ablate "ablation" { at final on iid: accuracy with ablate(L1.H0, mean) < accuracy }
claim contrib "path contribution" { at final on iid: contribution(l0h0) > 0 }
claim align "alignment" { at 40 on iid: alignment(l0h0) > 0 }
claim gram "gram" { at final on iid: gram(by=key) > 0 }
"""


def kv_split_as_task(run_dir: Path, out: Path, split: str = "test_iid") -> Path:
    """A KV split written as a task file: one line per sequence, a read per example."""
    loaded = dataset.load_split(data_dir(run_dir), split)
    reads = loaded.reads
    lines = []
    for seq in range(len(loaded)):
        examples = []
        for r in np.flatnonzero(reads.sequence == seq):
            roles: dict[str, object] = {
                role: int(reads.single[role][r]) for role in SINGLE_ROLES if role != "answer"
            }
            roles.update({role: np.flatnonzero(reads.sets[role][r]).tolist() for role in SET_ROLES})
            position = int(reads.single["answer"][r])
            examples.append({"position": position, "target": int(reads.target[r]), "roles": roles})
        tokens = loaded.tokens[seq, : loaded.lengths[seq]].tolist()
        lines.append(json.dumps({"tokens": tokens, "examples": examples}))
    out.mkdir(parents=True)
    (out / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    spec = {
        "name": "kv_as_task",
        "vocab_size": vocab.VOCAB_SIZE,
        "pad": vocab.PAD,
        "roles": [r for r in SINGLE_ROLES if r != "answer"],
        "set_roles": list(SET_ROLES),
        "answer_tokens": [vocab.FIRST_VALUE, vocab.N_VALUES],
        "splits": [split],
    }
    (out / "task.json").write_text(json.dumps(spec))
    return out


@pytest.fixture(scope="module")
def task_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("task_run")
    assert main(["export", str(tiny_run), "--step", "all", "--to", "hf", str(root / "hf")]) == 0
    task = kv_split_as_task(tiny_run, root / "task")
    run = root / "run"
    assert main(["import", str(root / "hf"), "--task", str(task), "--out", str(run)]) == 0
    return run


def test_a_task_file_gives_the_kv_runs_results(tiny_run: Path, task_run: Path):
    from hypodsl.compiler import compile_spec
    from hypodsl.parser import parse
    from runner.engine.study import run_study

    signature = read_signature(task_run)
    assert signature["splits"] == {
        "test_iid": len(dataset.load_split(data_dir(tiny_run), "test_iid"))
    }
    assert signature["roles"][0] == "answer" and "stale_value" in signature["roles"]
    plan = compile_spec(parse(SPEC, "same.hyp"), SPEC, signature)
    kv, task = (run_study(plan, [r]).claims for r in (tiny_run, task_run))
    assert len(kv) == 9
    for a, b in zip(kv, task, strict=True):
        assert a.verdict == b.verdict, a.name
        assert a.predictions[0].estimate == pytest.approx(b.predictions[0].estimate, abs=1e-9), (
            a.name
        )


def test_hypo_check_knows_the_tasks_roles(task_run: Path, tmp_path, capsys):
    spec = tmp_path / "roles.hyp"
    spec.write_text(
        'study "x"\nprobe p = split test_iid n 8 seed 0\n'
        'claim c "x" { at final on p: attention(L0.H0, from=answer, to=match_valu) > 0 }\n'
    )
    assert main(["check", str(spec), "--run", str(task_run)]) == 2
    err = capsys.readouterr().err
    assert "roles.hyp:3:" in err and "match_value" in err and "Traceback" not in err


def write_task(tmp_path: Path, lines: list[object], **spec: object) -> Path:
    task = tmp_path / "task"
    task.mkdir(parents=True)
    fields = {"name": "t", "vocab_size": 10, "roles": ["prev"], "splits": ["held"]} | spec
    (task / "task.json").write_text(json.dumps(fields))
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    (task / "held.jsonl").write_text(text + "\n")
    return task


GOOD = {"tokens": [1, 2, 3, 4], "examples": [{"position": 2, "target": 4, "roles": {"prev": 1}}]}


def test_a_task_file_is_read_into_a_read_table(tmp_path):
    second = {"tokens": [5, 6], "examples": [{"position": 1, "target": 7, "roles": {"prev": 0}}]}
    task = write_task(tmp_path, [GOOD, "", second])
    manifest = write_task_data(task, tmp_path / "data", n_ctx=8)
    assert manifest["splits"] == {"held": 2} and manifest["roles"] == ["answer", "prev"]
    split = dataset.load_split(tmp_path / "data", "held")
    assert split.tokens.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert split.lengths.tolist() == [4, 2]
    assert split.reads.sequence.tolist() == [0, 1] and split.reads.target.tolist() == [4, 7]
    assert split.reads.single["answer"].tolist() == [2, 1]
    assert split.reads.single["prev"].tolist() == [1, 0]
    assert split.answer_tokens == (0, 10)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (GOOD | {"examples": [{"position": 2, "target": 4, "roles": {"prev": 9}}]},
         "held.jsonl:2: example 0: role `prev` at position 9 is outside the sequence (4 tokens)"),
        (GOOD | {"examples": [{"position": 7, "target": 4, "roles": {"prev": 1}}]},
         "position 7 is outside the sequence"),
        (GOOD | {"examples": [{"position": 2, "target": 4, "roles": {"prve": 1}}]},
         "role `prve` is not declared in task.json (prev)"),
        (GOOD | {"examples": [{"position": 2, "target": 4}]}, "no position for role `prev`"),
        (GOOD | {"tokens": [1, 2, 30, 4]}, "token 30 is outside the vocabulary"),
        (GOOD | {"tokens": [*range(9), 1]}, "more than the model's context (8)"),
        ('{"tokens": [1, 2', "held.jsonl:2: not a JSON object"),
        ({"tokens": [], "examples": []}, "held.jsonl:2: field `tokens`"),
    ],
)  # fmt: skip
def test_a_bad_line_names_its_file_and_line(tmp_path, line, message):
    task = write_task(tmp_path, [GOOD, line])
    with pytest.raises(TaskError) as caught:
        write_task_data(task, tmp_path / "data", n_ctx=8)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"roles": ["first"]}, "role `first` is a word of the spec language"),
        ({"roles": ["answer"]}, "role `answer` is the scored position"),
        ({"roles": ["a-b"]}, "role `a-b` is not a name"),
        ({"pad": 10}, "pad 10 is outside the vocabulary"),
        ({"answer_tokens": [8, 5]}, "answer_tokens [8, 5] leave the vocabulary"),
        ({"vocab_size": "ten"}, "field `vocab_size`"),
    ],
)
def test_a_bad_task_json_is_a_clear_error(tmp_path, spec, message):
    with pytest.raises(UserError) as caught:
        read_spec(write_task(tmp_path, [GOOD], **spec))
    assert message in str(caught.value)


def test_bad_task_imports_exit_2_with_one_line(tiny_run: Path, tmp_path, capsys):
    series = tmp_path / "hf"
    assert main(["export", str(tiny_run), "--step", "all", "--to", "hf", str(series)]) == 0
    outside = GOOD | {"examples": [{"position": 2, "target": 4, "roles": {"prev": 40}}]}
    task = write_task(tmp_path, [outside])
    assert main(["import", str(series), "--task", str(task), "--out", str(tmp_path / "a")]) == 2
    not_gpt2 = tmp_path / "bert" / "checkpoint-0"
    not_gpt2.mkdir(parents=True)
    (not_gpt2 / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (not_gpt2 / "model.safetensors").write_bytes(
        (series / "checkpoint-0" / "model.safetensors").read_bytes()
    )
    good = write_task(tmp_path / "g", [GOOD])
    assert (
        main(["import", str(tmp_path / "bert"), "--task", str(good), "--out", str(tmp_path / "b")])
        == 2
    )
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 2 and "Traceback" not in err
    assert "held.jsonl:1: example 0: role `prev` at position 40 is outside" in lines[0]
    assert "only GPT-2 checkpoints are read" in lines[1]


def test_a_series_can_be_listed_in_a_json_file(tiny_run: Path, tmp_path):
    from runner.model.hf_import import checkpoint_dirs

    series = tmp_path / "hf"
    assert main(["export", str(tiny_run), "--step", "all", "--to", "hf", str(series)]) == 0
    listing = tmp_path / "series.json"
    listing.write_text(json.dumps({"0": "hf/checkpoint-0", "10": "hf/checkpoint-10"}))
    assert checkpoint_dirs(listing) == {0: series / "checkpoint-0", 10: series / "checkpoint-10"}


def test_the_committed_schema_is_current():
    committed = json.loads((ROOT / "docs" / "task.schema.json").read_text())
    assert committed == task_schema(), (
        "regenerate: python -m runner.task.taskfile > docs/task.schema.json"
    )
