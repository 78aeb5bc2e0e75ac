"""Number exercises per chapter: "Exercise 7.1", "Exercise 7.2", ... in chapter 7.

The table of contents is not numbered (a chapter's number is part of its first heading,
"7. GPT", written in the notebook), so Sphinx's figure numbering would count sphinx-exercise's
exercises across the whole book ("Exercise 27" in chapter 7). After Sphinx has assigned its
numbers, this renumbers each document's exercises as (chapter, 1), (chapter, 2), ... in the
order they appear, taking the chapter from the leading number of the document's title.
Documents whose title has no number keep Sphinx's numbers. Every place that prints an
exercise number (the exercise's caption, `{ref}`/`{numref}` to it) reads the new one.
"""

import re

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

CHAPTER = re.compile(r"^(\d+)\.\s")


def chapter_number(env: BuildEnvironment, docname: str) -> int | None:
    """The number a document's title starts with ("7. GPT" -> 7), or None."""
    title = env.titles.get(docname)
    match = CHAPTER.match(title.astext()) if title is not None else None
    return int(match.group(1)) if match else None


def renumber_exercises(app: Sphinx, env: BuildEnvironment) -> list[str]:
    for docname, fignumbers in env.toc_fignumbers.items():
        chapter = chapter_number(env, docname)
        exercises = fignumbers.get("exercise")
        if chapter is None or not exercises:
            continue
        # dicts keep insertion order, which is the order of the exercises in the document
        for i, node_id in enumerate(exercises, start=1):
            exercises[node_id] = (chapter, i)
    return []  # a document's numbers change only when the document itself does


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx_exercise")
    # After Sphinx's TocTreeCollector (priority 500) has assigned its figure numbers.
    app.connect("env-get-updated", renumber_exercises, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
