"""A griffe extension for the API reference (mkdocs.yml): spotlake's docstrings are written in
reStructuredText habits; the site renders them as Markdown. This turns the two habits that would
otherwise show as noise into Markdown:

* Sphinx roles (``:class:`~spotlake.x.Y` ``, ``:func:`plan_calls` ``, ``:mod:`.base` ``) become
  code that links to the object when the reference documents it (an *optional* autorefs link:
  a target outside the reference stays plain code, without a warning);
* a paragraph ending in ``::`` (a literal block follows) ends in ``:``; the indented block after
  it is already a Markdown code block.

Not part of the package: the docs build loads it by path. Only the rendered text changes.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`"
)
_LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)
_BARE_LITERAL = re.compile(r"^(?P<indent>[ \t]*)::$", re.MULTILINE)


def _candidates(target: str, obj: griffe.Object) -> list[str]:
    """Where a role's target may live, nearest first: itself when absolute, else the object's own
    members, its class's, its module's and its package's (``.x`` is relative to the package)."""
    module = obj if obj.is_module else obj.module
    package = module.path if module.is_init_module else module.path.rpartition(".")[0]
    if target.startswith("."):
        return [package + target]
    if target.startswith("spotlake."):
        return [target]
    scopes = [obj.path]
    parent = obj.parent
    while parent is not None and not parent.is_module:
        scopes.append(parent.path)
        parent = parent.parent
    scopes += [module.path, package]
    return [f"{scope}.{target}" for scope in scopes]


def _rewrite(text: str, obj: griffe.Object, root: griffe.Module) -> str:
    def role(match: re.Match[str]) -> str:
        target = match["target"].strip().rstrip("()")
        candidates = _candidates(target, obj)
        identifier = next((c for c in candidates if _exists(root, c)), candidates[0])
        shown = target.rsplit(".", 1)[-1] if match["tilde"] or target.startswith(".") else target
        # An optional link: a target the reference does not render stays plain code, no warning.
        return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'

    text = _ROLE.sub(role, text)
    text = _BARE_LITERAL.sub("", text)
    return _LITERAL.sub(":", text)


def _exists(root: griffe.Module, path: str) -> bool:
    if not path.startswith(root.path + "."):
        return path == root.path
    try:
        root[path[len(root.path) + 1 :]]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found += _objects(member)  # type: ignore[arg-type]
    return found


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite every docstring's Sphinx roles and ``::`` markers as Markdown (see the module)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Once the package is loaded (so references can be looked up), rewrite its docstrings."""
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, obj, pkg)
