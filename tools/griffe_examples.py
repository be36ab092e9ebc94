"""A griffe extension for the API reference (loaded from mkdocs.yml): read ``Example:`` as ``Examples:``.

The docstrings use Google style's ``Example:`` header, which Sphinx's napoleon reads as an examples section
but griffe as a plain admonition, whose ``>>>`` lines Markdown turns into nested block quotes run together
into one line. Renaming the header here, once, makes every example a code block.
"""

import re

import griffe

HEADER = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename each docstring's ``Example:`` section header to ``Examples:`` before griffe parses it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = HEADER.sub(r"\1Examples:", obj.docstring.value)
