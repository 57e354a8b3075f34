"""The attention variants' names, importable without JAX (the experiment's presets use them)."""

ATTENTION_VARIANTS = ("full", "wqk", "wqk_novo", "symmetric", "symmetric_novo")
MULTI_HEAD_VARIANTS = ("full", "symmetric")  # the paper defines the others for one head


def default_heads(attention: str, triangular: bool) -> int:
    """4 heads where the paper runs the variant with several (full, symmetric), else 1."""
    return 4 if attention in MULTI_HEAD_VARIANTS and not triangular else 1
