"""hypodsl: the `.hyp` language for claims about transformers across training checkpoints.

This package is torch-free: source positions and errors, the Lark parser, the syntax tree,
semantic checks against a run's signature, the compiler to a `Plan`, and the CLI (which imports
`runner` lazily, only in the commands that need a model).
"""

__version__ = "0.1.0"
