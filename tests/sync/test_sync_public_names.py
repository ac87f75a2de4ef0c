"""``luisy_sync.__all__`` is exactly the package's public names, in both directions."""

from __future__ import annotations

import inspect
import types

import luisy_sync
from luisy_sync import errors

_TYPING_HELPERS = {"annotations", "TYPE_CHECKING", "Any"}


def test_all_names_resolve_and_every_public_name_is_listed() -> None:
    for name in luisy_sync.__all__:  # every listed name resolves (lazy store names included)
        getattr(luisy_sync, name)
    public = {
        name for name, value in vars(luisy_sync).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        and name not in _TYPING_HELPERS
    }
    assert public == set(luisy_sync.__all__)
    assert len(luisy_sync.__all__) == len(set(luisy_sync.__all__))


def test_every_error_type_is_exported() -> None:
    kinds = {name for name, value in vars(errors).items()
             if inspect.isclass(value) and issubclass(value, errors.SyncError)}
    assert kinds <= set(luisy_sync.__all__), sorted(kinds - set(luisy_sync.__all__))


def test_one_line_is_the_first_message_line_with_or_without_the_type() -> None:
    from luisy_sync.errors import one_line

    assert one_line(ValueError("bad thing\nmore detail")) == "ValueError: bad thing"
    assert one_line(ValueError("bad thing\nmore"), with_type=False) == "bad thing"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert one_line(OSError(), with_type=False) == "OSError"
