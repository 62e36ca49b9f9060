"""The experiment families, one folder each: ``families/<name>/`` (model, theory, analysis,
figures), whose package builds one ``twolayer.family.Family`` called ``FAMILY``, made known by
one line in ``pyproject.toml``::

    [project.entry-points."twolayer.families"]
    single_neuron = "twolayer.families.single_neuron:FAMILY"

(a family in another package registers the same way, in its own pyproject). The registry
(``get``, ``names``, ``register``) lives in ``twolayer.family`` and is named here too.
Families are loaded when first asked for, so naming one does not import the others.
"""
from __future__ import annotations

from ..family import (_REGISTERED, DEFAULT, GROUP, Family, get, local_only,  # noqa: F401
                      names, register, registered, version)

__all__ = ["Family", "GROUP", "DEFAULT", "register", "registered", "names", "get",
           "local_only", "version"]
