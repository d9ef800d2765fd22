"""File-name patterns (``"ckpt-{epoch:03d}.npz"``): their fields, checked, and the
names they make."""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Iterable

#: A format spec a path pattern may give a field: ``[[fill]align][sign][z][#][0][width]
#: [grouping][.precision][type]`` with a fill that is a letter, digit, ``_``, ``-`` or a
#: space, a width of at most 3 digits and no ``c`` type (a character code could be a
#: separator). Nothing in it can make a separator or nest another field.
_SAFE_SPEC = re.compile(r"(?:[A-Za-z0-9_ \-]?[<>=^])?[+\- ]?z?#?0?[0-9]{0,3}[,_]?"
                        r"(?:\.[0-9]{1,2})?[bdeEfFgGnoxX%]?")
_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def path_pattern_fields(pattern: str, what: str) -> list[str]:
    """The field names of the path pattern ``pattern`` (``"ckpt-{epoch:03d}.npz"``), in
    order; refused (ValueError naming ``what`` and the pattern) unless every field is a
    plain name (no ``{}``, no ``{0}``, no ``{epoch.attr}`` or ``{epoch[0]}``), without a
    conversion (``!r``), with a simple format spec (`_SAFE_SPEC`: none nested), in the
    file name only (the folder is literal)."""
    def refuse(why: str) -> ValueError:
        return ValueError(f"{what} {pattern!r} {why} (a pattern names fields by plain name in "
                          f"its file name, e.g. 'ckpt/model-{{epoch:03d}}.npz'; write "
                          f"braces as {{{{ and }}}})")

    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise refuse(f"is not a valid name pattern: {exc}") from None
    fields: list[str] = []
    for literal, field, spec, conversion in parts:
        if fields and any(sep in literal for sep in _SEPARATORS):
            raise refuse(f"names the field {fields[0]!r} in a folder; only the file name may "
                         f"name fields")
        if field is None:
            continue
        if not field.isidentifier():
            raise refuse(f"has the field {{{field}}}, which is not a plain name such as "
                         f"epoch or val_loss")
        if conversion is not None:
            raise refuse(f"converts the field {field!r} with !{conversion}; conversions are "
                         f"not taken")
        if not _SAFE_SPEC.fullmatch(spec or ""):
            raise refuse(f"gives the field {field!r} the format spec {spec!r}, which is not a "
                         f"simple one such as '03d', '>5' or '.3f'")
        fields.append(field)
    return fields


def sample_names(pattern: str, metrics: Iterable[str]) -> list[str]:
    """The paths ``pattern`` makes for a few epochs and metric values (first epoch, a large
    one, negative, tiny, NaN and infinite values), each checked to lie in the pattern's
    folder; a format spec that does not suit a value (``{val_loss:d}``) is refused."""
    prefix = ""  # the literal text before the first field (braces unescaped)
    for literal, field, _, _ in string.Formatter().parse(pattern):
        prefix += literal
        if field is not None:
            break
    cut = max(prefix.rfind(sep) for sep in _SEPARATORS)
    folder = prefix[:cut] if cut > 0 else prefix[:1] if cut == 0 else ""
    names = []
    for epoch, value in ((1, 0.5), (12345, -1.25e-7), (2, math.nan), (3, -math.inf)):
        try:
            name = pattern.format(epoch=epoch, **dict.fromkeys(metrics, value))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"ModelCheckpoint path {pattern!r} cannot name epoch {epoch} "
                             f"with a value of {value}: {exc}") from None
        base = name[len(folder):]
        if folder and base[:1] in _SEPARATORS and not folder.endswith(_SEPARATORS):
            base = base[1:]
        if not name.startswith(folder) or base in ("", ".", "..") or any(
                sep in base for sep in _SEPARATORS):
            raise ValueError(f"ModelCheckpoint path {pattern!r} makes the name {name!r}, "
                             f"which is not a file in {folder or '.'!r}")
        names.append(name)
    return names
