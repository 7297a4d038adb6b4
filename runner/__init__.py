"""Everything in hypodsl that touches torch, one subpackage per stage of the data flow.

A compiled `hypodsl.plan.Plan` goes in; verdicts, ledgers and figures come out. The stages, each
of which imports only the stages named after "uses" (tests/unit/test_layout.py keeps it so):

    kv/       the stream KV benchmark: splits, roles, sanity     uses nothing
    model/    transformer, hook points, configs, checkpoints    uses kv
    measure/  per-read quantities on one model and probe         uses kv, model
    train/    a run directory with dense checkpoints             uses kv, model, measure
    stats/    bootstrap, judging, births, verdicts, results      uses nothing
    engine/   a plan over a run's checkpoints, cached            uses all of the above
    report/   terminal, Markdown ledger, figures, gate, diff     uses stats

`atomic` (atomic file writes) sits below every stage. The language package `hypodsl` never
imports this package at module import time; its CLI modules import it lazily, inside the
commands that need it.
"""
