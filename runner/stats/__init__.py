"""The statistics: from per-read measurements to tested predictions and verdicts.

Takes per-read values (numpy arrays keyed by checkpoint, probe and quantity) and the plan's
predictions; gives `results.StudyResult`: every claim with its verdict, estimate, interval,
p-values, series and provenance. Pure numpy: it imports no torch and no other stage.

- `bootstrap`: the seeded cluster bootstrap over sequences, p-values, multiplicity corrections.
- `judge`: plug-in statistics per prediction, windows (`all`, `mean`, `trend`) and births.
- `births`: the first checkpoint from which a condition holds and keeps holding.
- `rules`: the verdict rules (Supported, Negative, Unsupported) and seed-matrix aggregation.
- `results`: the result models, JSON-serialisable and deterministic.
"""
