"""Tasks other than the stream-KV benchmark, given as task files.

Takes a task directory (`task.json` and one `SPLIT.jsonl` per split: sequences, and for every
example the position scored, its target token and its named role positions); gives the same
split files the KV benchmark writes (`runner.kv.dataset`), with the task's own role names, so
every quantity, intervention and window runs on it unchanged.
"""
