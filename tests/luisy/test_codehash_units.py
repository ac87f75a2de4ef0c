"""Pure parts of luisy.codehash: AST normalisation, name analysis, requirement pins."""

from __future__ import annotations

import ast

import pytest

from luisy.codehash.normalize import name_uses, normalized_dump
from luisy.codehash.versions import _read_pins, normalize_name


def dump(source: str) -> str:
    return normalized_dump(ast.parse(source))


# (source a, source b, same normalised text?)
DUMP_CASES = [
    ("x = 'a'", 'x = "a"', True),
    ("x = 1.0", "x = 1.", True),
    ("f(a,b)", "f( a ,\n  b )  # c", True),
    ("def f():\n    '''doc'''\n    return 1", "def f():\n    return 1", True),
    ("class A:\n    'doc'\n    x = 1", "class A:\n    x = 1", True),
    ('"""module doc"""\nx = 1', "x = 1", True),
    ("def f():\n    return 1", "def f():\n    'doc'\n    return 2", False),
    ("x = 1", "y = 1", False),
    ("def f():\n    x = 'not a docstring'\n    return x", "def f():\n    x = 'other'\n    return x", False),
    ("x = None", "x = 0", False),
]


@pytest.mark.parametrize("a, b, same", DUMP_CASES)
def test_normalized_dump(a, b, same):
    assert (dump(a) == dump(b)) is same


def test_normalized_dump_survives_deep_nesting():
    source = "x = " + " + ".join(["a"] * 2500)  # deeper than ast.dump can go
    assert dump(source).count("BinOp(") == 2499


# (source, expected {free name: attribute paths})
USES_CASES = [
    ("def f(a):\n    return a + b", {"b": {()}}),
    ("def f():\n    return h.g(1) + h.k.m", {"h": {("g",), ("k", "m")}}),
    ("def f():\n    x = 1\n    return x", {}),
    ("def f():\n    return [i for i in items]", {"items": {()}}),
    ("def f():\n    return f(1)", {"f": {()}}),
    ("class A(Base):\n    p = luigi.Parameter()\n    def run(self):\n        return self.p", {"Base": {()}, "luigi": {("Parameter",)}}),
    ("def f():\n    try:\n        pass\n    except E as err:\n        return err", {"E": {()}}),
    ("def f():\n    def g():\n        return 1\n    return g()", {}),
    ("def f():\n    return len(h)", {"len": {()}, "h": {()}}),
]


@pytest.mark.parametrize("source, expected", USES_CASES)
def test_name_uses(source, expected):
    tree = ast.parse(source).body[0]
    assert name_uses([tree]).paths == expected


def test_imports_inside_code_are_bindings_not_locals():
    tree = ast.parse("def f():\n    from .helpers import g\n    import os.path\n    return g() + os.sep").body[0]
    uses = name_uses([tree])
    assert set(uses.imports) == {"g", "os"}
    assert uses.paths == {"g": {()}, "os": {("sep",)}}


def test_requirement_pins(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# comment\n"
        "Pandas==2.0.1\n"
        "typing_extensions == 4.9.0 ; python_version < '3.12'\n"
        "rich[jupyter]==13.7.0\n"
        "requests>=2\n"
        "-e .\n"
        "--index-url https://example.invalid/simple\n"
        "zope.interface===6.1  # exact\n"
    )
    pins, _ = _read_pins(str(path))
    assert pins == {"pandas": "2.0.1", "typing-extensions": "4.9.0", "rich": "13.7.0", "zope-interface": "6.1"}


@pytest.mark.parametrize("raw, normal", [("Foo_Bar", "foo-bar"), ("a.b--c", "a-b-c"), ("x", "x")])
def test_normalize_name(raw, normal):
    assert normalize_name(raw) == normal
