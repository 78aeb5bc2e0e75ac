"""What every converter in `lib.hf` shares: the lazy import of `transformers`."""

from __future__ import annotations


def transformers_module():
    """The `transformers` module, imported now; an ImportError that says how to install it.

    The converters call this inside their functions rather than importing at the top:
    `transformers` is an optional extra and costs ~7 s to import, which `import lib.hf` should
    not pay (nor fail on) for a reader who never converts a model.
    """
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(
            "converting to or from Hugging Face needs the transformers package: "
            "pip install -e '.[hf]' (or pip install transformers)"
        ) from exc
    return transformers
