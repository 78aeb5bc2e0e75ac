"""Serve MathJax 3 from the installed `django-static-mathjax` wheel, so math renders offline.

`mathjax_path` in _config.yml points at `_static/mathjax/tex-mml-chtml.js`; this extension copies
that one combined script and the web fonts it loads (same relative layout) into the built book.
Nothing of MathJax is committed to the repository and no page asks a CDN for it.
"""

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

FILES = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2")


def mathjax_source() -> Path:
    """The es5 folder of the MathJax copy installed by the `django-static-mathjax` wheel."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or spec.origin is None:
        raise ExtensionError("MathJax is not installed: pip install django-static-mathjax")
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5"
    if not (es5 / FILES[0]).is_file():
        raise ExtensionError(f"{es5} holds no {FILES[0]}: reinstall django-static-mathjax")
    return es5


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for name in FILES:
        src, dst = source / name, target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)


def setup(app: Sphinx) -> dict:
    mathjax_source()
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
