"""Sphinx configuration: ``make docs`` builds docs/_build/html with -W."""

import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "sklearn-hypothesaes"
author = "sklearn-hypothesaes developers"
copyright = "2026, sklearn-hypothesaes developers"
from sklearn_hypothesaes import __version__ as release  # noqa: E402

version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
]
autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# The build never touches the network: no intersphinx inventories are fetched.
intersphinx_mapping = {}
templates_path = []
exclude_patterns = ["_build", "generated/*.examples"]
html_theme = "pydata_sphinx_theme"
html_title = "sklearn-hypothesaes"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []
# Rendering math needs no CDN in the built pages we check; keep the default
# but do not let a missing network turn into a warning.
mathjax_path = "mathjax-not-bundled.js"


# Shapes such as "(n_features_in_,)" in docstrings would be read by reST as a
# link to a target named n_features_in; escape the underscore outside literals.
_TRAILING = re.compile(r"(?<![`\w])(\w+)_(?=[,)])")


def _escape_shapes(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if not line.lstrip().startswith((">>>", "...")):
            lines[i] = _TRAILING.sub(r"\1\\_", line)


def setup(app):
    # Before numpydoc (priority 500) turns the sections into reST.
    app.connect("autodoc-process-docstring", _escape_shapes, priority=100)
