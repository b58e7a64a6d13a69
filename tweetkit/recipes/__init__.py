"""Recipes: what `finetune`, `pretrain` and `evaluate` do, as plain functions over a typed config.

Each command parses its flags into the recipe's config dataclass and calls the recipe's `run`;
no click here, so the recipes can be called, and tested, without the command line.
"""
