"""Author-year citations and an author-year reference list, with one label for both.

`bibtex_reference_style: author_year` makes the text cite "(Vaswani et al., 2017)", but the
reference list takes its labels from the pybtex formatting style (`bibtex_default_style`),
whose default, "alpha", prints "[VSP+17]". This registers three styles that agree:

- the pybtex label style `author_year`: "Gage, 1994", "Press and Wolf, 2017",
  "Vaswani et al., 2017", the names written as the citations write them; where two entries
  would get the same label, the year takes a letter ("Touvron et al., 2023a", "... 2023b");
- the pybtex formatting style `author_year`: pybtex's `unsrt` entries with those labels,
  sorted by author, then year, then title (`bibtex_default_style: author_year`);
- the citation style `author_year_label`: sphinxcontrib-bibtex's `author_year` citations with
  the year taken from the entry's label, so the text cites "(Touvron et al., 2023a)" as the
  list names it (`bibtex_reference_style: author_year_label`).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from string import ascii_lowercase

from pybtex.plugin import find_plugin, register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.template import Node, node
from sphinx.application import Sphinx
from sphinxcontrib.bibtex import plugin as bibtex_plugin
from sphinxcontrib.bibtex.style.referencing import GroupReferenceStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join, join2, post_text, pre_text, reference

NO_YEAR = "n.d."  # what sphinxcontrib-bibtex's `year` node prints for an entry without one


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Surname, year", "A and B, year" or "A et al., year", made unique with a, b, ..."""

    name_style = find_plugin("pybtex.style.names", "last")()

    def names(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor")
        if not persons:
            return Text(entry.fields.get("title", entry.key)).render_as("text")
        names = [self.name_style.format(p, abbr=True).format().render_as("text") for p in persons]
        # the same rule as sphinxcontrib-bibtex's PersonStyle: two names, or one and "et al."
        if len(names) == 1:
            return names[0]
        if len(names) == 2:
            return f"{names[0]} and {names[1]}"
        return f"{names[0]} et al."

    def format_labels(self, sorted_entries) -> Iterable[str]:
        labels = [f"{self.names(e)}, {e.fields.get('year', NO_YEAR)}" for e in sorted_entries]
        repeated, used = Counter(labels), Counter()
        for label in labels:
            if repeated[label] == 1:
                yield label
            else:
                yield label + ascii_lowercase[used[label]]
                used[label] += 1


class AuthorYearStyle(UnsrtStyle):
    """pybtex's unsrt entries, labelled and sorted by author and year."""

    default_label_style = "author_year"
    default_sorting_style = "author_year_title"


@node
def label_year(children, data) -> Text:
    """The year of the entry as its label writes it: "2023a" for "Touvron et al., 2023a"."""
    assert not children
    return Text(data["formatted_entry"].label.rpartition(", ")[2])


@dataclass
class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name: str) -> Node:
        names = self.person.author_or_editor_or_title(full="s" in role_name)
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text, reference[join(sep=self.author_year_sep)[names, label_year]], post_text
        ]


@dataclass
class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name: str) -> Node:
        names = self.person.author_or_editor_or_title(full="s" in role_name)
        cited = join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text, reference[label_year], post_text
        ]
        return join(sep=self.text_reference_sep)[
            names, join[self.bracket.left, cited, self.bracket.right]
        ]


@dataclass
class _Year(ExtraYearReferenceStyle):
    def inner(self, role_name: str) -> Node:
        return reference[label_year]


@dataclass
class AuthorYearLabelReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author-year citations, with the year as the label has it."""

    def __post_init__(self):
        self.styles.extend(
            [
                _Parenthetical(
                    bracket=self.bracket_parenthetical,
                    person=self.person,
                    author_year_sep=self.author_year_sep,
                    pre_text_sep=self.pre_text_sep,
                    post_text_sep=self.post_text_sep,
                ),
                _Textual(
                    bracket=self.bracket_textual,
                    person=self.person,
                    text_reference_sep=self.text_reference_sep,
                    pre_text_sep=self.pre_text_sep,
                    post_text_sep=self.post_text_sep,
                ),
                ExtraAuthorReferenceStyle(bracket=self.bracket_author, person=self.person),
                ExtraLabelReferenceStyle(bracket=self.bracket_label),
                _Year(bracket=self.bracket_year),
                ExtraEmptyReferenceStyle(),
            ]
        )
        GroupReferenceStyle.__post_init__(self)


def setup(app: Sphinx) -> dict:
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    bibtex_plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing", "author_year_label", AuthorYearLabelReferenceStyle
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
