"""Everything in hypodsl that touches torch: benchmark, model, training, measurement, reports.

The language package `hypodsl` never imports this package at module import time; the CLI
imports it lazily inside the commands that need it.
"""
