"""Write each `<script>` of a page once, so no page logs "Identifier ... has already been declared".

Sphinx 7.4 keeps a script registered after the builder starts (`app.add_js_file(None, body=...)`
from an extension's `builder-inited` or `env-before-read-docs` handler) twice: once as given,
with filename `None`, and once more when `prepare_writing` re-adds every registered script with
filename `''`. The two compare unequal, so both reach the page. For sphinx-thebe's
`const THEBE_JS_URL = ...` the second copy is a SyntaxError in the console of every page
(sphinx-togglebutton's `var togglebuttonSelector` is repeated too, harmlessly). This drops
the later copy of any script whose file (or inline body) and attributes equal an earlier one.
"""

from sphinx.application import Sphinx


def drop_repeated_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    # In place: the list is the builder's own, which Sphinx restores before the next page.
    scripts[:] = kept


def setup(app: Sphinx) -> dict:
    # Late (priority 900), after the extensions that add scripts to the page.
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
