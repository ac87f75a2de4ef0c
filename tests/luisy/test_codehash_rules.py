"""Which source changes change a task's code hash (luisy.codehash), on real packages.

Every case writes a small package into tmp_path under a fresh name, imports it,
hashes a class, then writes the edited variant under another fresh name.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from luisy.codehash import (
    CodeHashError,
    StarImportError,
    class_code_hash,
    clear_caches,
)

REPO = Path(__file__).resolve().parents[2]

def dedented(files: dict[str, str]) -> dict[str, str]:
    return {name: textwrap.dedent(source).lstrip("\n") for name, source in files.items()}


BASE = dedented({
    "__init__.py": "",
    "helpers.py": '''
        import math

        SCALE = 10
        OTHER_CONST = 3


        def scale(x):
            return x * SCALE


        def offset():
            return math.floor(1.5)


        def unused_helper():
            return 1
        ''',
    "tasks.py": '''
        import luigi

        from . import helpers as hp
        from .helpers import scale

        LIMIT = 5
        UNUSED_CONST = 1


        def local_helper(x):
            return x + LIMIT


        def unused_local():
            return 0


        class Base(luigi.Task):
            def prepare(self):
                return 1


        class MyTask(Base):
            """Docstring."""

            n = luigi.IntParameter(default=1)

            def run(self):
                # a comment
                return scale(local_helper(self.n)) + hp.offset()
        ''',
})


@pytest.fixture
def make_package(tmp_path, monkeypatch):
    """Write {file: source} as a fresh package under tmp_path; returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(files: dict[str, str], root: Path = tmp_path) -> str:
        name = "chpkg_" + uuid.uuid4().hex[:12]
        package = root / name
        package.mkdir()
        for relname, source in files.items():
            text = textwrap.dedent(source).lstrip("\n").replace("{pkg}", name)
            (package / relname).write_text(text)
        importlib.invalidate_caches()
        created.append(name)
        return name

    yield make
    for module in list(sys.modules):
        if module.split(".")[0] in created:
            del sys.modules[module]
    clear_caches()


def hash_of(package: str, cls: str = "MyTask", module: str = "tasks") -> str:
    return class_code_hash(getattr(importlib.import_module(f"{package}.{module}"), cls))


def edited(files: dict[str, str], module: str, old: str, new: str) -> dict[str, str]:
    assert old in files[module], f"case does not apply: {old!r} not in {module}"
    return {**files, module: files[module].replace(old, new)}


# (case, file, old text, new text, hash stays the same?)
EDIT_CASES = [
    ("docstring changed", "tasks.py", '"""Docstring."""', '"""Another text."""', True),
    ("docstring removed", "tasks.py", '"""Docstring."""', "", True),
    ("module docstring added", "tasks.py", "import luigi", '"""Module doc."""\nimport luigi', True),
    ("comment changed", "tasks.py", "# a comment", "# another comment entirely", True),
    ("comment added", "tasks.py", "def prepare(self):", "def prepare(self):  # why", True),
    (
        "formatting changed",
        "tasks.py",
        "return scale(local_helper(self.n)) + hp.offset()",
        "return scale(\n            local_helper( self.n )\n        )+hp.offset( )",
        True,
    ),
    ("docstring added to used helper", "helpers.py", "def scale(x):", "def scale(x):\n    'Scale x.'", True),
    ("unused helper same module", "tasks.py", "return 0", "return 42", True),
    ("unused constant same module", "tasks.py", "UNUSED_CONST = 1", "UNUSED_CONST = 2", True),
    ("unused helper other module", "helpers.py", "return 1", "return 2", True),
    ("unused constant other module", "helpers.py", "OTHER_CONST = 3", "OTHER_CONST = 4", True),
    ("new unused function", "tasks.py", "LIMIT = 5", "LIMIT = 5\n\n\ndef extra():\n    pass", True),
    ("task body changed", "tasks.py", "+ hp.offset()", "- hp.offset()", False),
    ("parameter default changed", "tasks.py", "IntParameter(default=1)", "IntParameter(default=2)", False),
    ("used helper same module", "tasks.py", "return x + LIMIT", "return x - LIMIT", False),
    ("used constant same module", "tasks.py", "LIMIT = 5", "LIMIT = 6", False),
    ("used helper other module", "helpers.py", "return x * SCALE", "return x * SCALE + 1", False),
    ("used constant other module", "helpers.py", "SCALE = 10", "SCALE = 11", False),
    ("helper via module alias", "helpers.py", "math.floor(1.5)", "math.ceil(1.5)", False),
    ("project base class", "tasks.py", "return 1\n", "return 2\n", False),
]


@pytest.mark.parametrize(
    "file, old, new, same", [c[1:] for c in EDIT_CASES], ids=[c[0] for c in EDIT_CASES]
)
def test_source_edit_changes_hash_only_when_behaviour_changes(make_package, file, old, new, same):
    before = hash_of(make_package(BASE))
    after = hash_of(make_package(edited(BASE, file, old, new)))
    assert (before == after) is same


def test_hash_is_an_xxh3_128_hex_digest(make_package):
    digest = hash_of(make_package(BASE))
    assert len(digest) == 32 and int(digest, 16) >= 0


def test_same_source_same_hash_in_fresh_process_and_other_directory(make_package, tmp_path):
    package = make_package(BASE)
    here = hash_of(package)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / package).mkdir()
    for name, source in BASE.items():
        (elsewhere / package / name).write_text(textwrap.dedent(source).lstrip("\n"))
    for path in (tmp_path, elsewhere):
        code = (
            "import importlib, sys\n"
            "from luisy.codehash import class_code_hash\n"
            f"module = importlib.import_module('{package}.tasks')\n"
            "print(class_code_hash(module.MyTask))\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(REPO)]), "PYTHONHASHSEED": "random"}
        env.pop("LUISY_REQUIREMENTS_PATH", None)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.strip() == here


def test_absolute_import_of_own_helper_module_is_followed(make_package):
    files = {
        "__init__.py": "",
        "helpers.py": "def f():\n    return 1\n",
        "tasks.py": "import luigi\nimport {pkg}.helpers as h\n\nclass MyTask(luigi.Task):\n    def run(self):\n        return h.f()\n",
    }
    one = hash_of(make_package(files))
    same = hash_of(make_package(edited(files, "helpers.py", "return 1", "# note\n    return 1\n\ndef g():\n    return 5")))
    other = hash_of(make_package(edited(files, "helpers.py", "return 1", "return 2")))
    assert one == same != other


def test_shadowed_module_name_is_not_tracked_as_documented(make_package):
    files = {
        "__init__.py": "",
        "tasks.py": """
            import luigi
            LIMIT = 1

            class MyTask(luigi.Task):
                def run(self):
                    LIMIT = 3
                    return LIMIT
            """,
    }
    assert hash_of(make_package(files)) == hash_of(make_package(edited(files, "tasks.py", "LIMIT = 1", "LIMIT = 2")))


RECURSIVE = dedented({
    "__init__.py": "",
    "loops.py": """
        from . import other

        def countdown(n):
            return 0 if n == 0 else countdown(n - 1)

        def ping(n):
            return pong(n - 1) if n else other.back(n)

        def pong(n):
            return ping(n - 1) if n else 1
        """,
    "other.py": """
        def back(n):
            from .loops import ping
            return ping(n)
        """,
    "tasks.py": """
        import luigi
        from .loops import countdown, ping

        class MyTask(luigi.Task):
            def run(self):
                return countdown(3) + ping(4)
        """,
})


@pytest.mark.parametrize(
    "file, old, new",
    [
        ("loops.py", "return 0 if", "return 1 if"),
        ("loops.py", "else 1", "else 2"),
        ("other.py", "return ping(n)", "return ping(n) + 1"),
    ],
    ids=["self-recursive", "mutually-recursive", "import-cycle-across-modules"],
)
def test_recursive_helpers_terminate_and_are_tracked(make_package, file, old, new):
    before = hash_of(make_package(RECURSIVE))
    assert before != hash_of(make_package(edited(RECURSIVE, file, old, new)))


@pytest.mark.parametrize("star_in", ["tasks.py", "helpers.py"])
def test_star_import_is_a_clear_error_naming_the_module(make_package, star_in):
    files = {
        "__init__.py": "",
        "consts.py": "X = 1\n",
        "helpers.py": "from .consts import X\n\ndef f():\n    return X\n",
        "tasks.py": "import luigi\nfrom .helpers import f\n\nclass MyTask(luigi.Task):\n    def run(self):\n        return f()\n",
    }
    files = edited(files, star_in, "from ", "from .consts import *\nfrom ")
    package = make_package(files)
    with pytest.raises(StarImportError) as error:
        hash_of(package)
    module = f"{package}.{star_in[:-3]}"
    assert error.value.module == module
    assert module in str(error.value) and "import *" in str(error.value)
    assert "\n" not in str(error.value)


DECORATED = dedented({
    "__init__.py": "",
    "deco.py": """
        def same_name(cls):
            return type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})

        def renamed(cls):
            return type("Wrapped", (cls,), {})
        """,
    "tasks.py": """
        import luigi
        from .deco import renamed, same_name

        @same_name
        class MyTask(luigi.Task):
            def run(self):
                return 1

        @renamed
        class Other(luigi.Task):
            def run(self):
                return 1
        """,
})


@pytest.mark.parametrize("cls", ["MyTask", "Other"])
def test_decorated_class_is_hashed_as_written(make_package, cls):
    package = make_package(DECORATED)
    module = importlib.import_module(f"{package}.tasks")
    generated = getattr(module, cls)
    written = generated.__mro__[1]
    assert generated is not written and written.__name__ == cls
    assert class_code_hash(generated) == class_code_hash(written)
    changed = make_package(edited(DECORATED, "tasks.py", f"class {cls}(luigi.Task):\n    def run(self):\n        return 1",
                                  f"class {cls}(luigi.Task):\n    def run(self):\n        return 2"))
    assert hash_of(package, cls) != hash_of(changed, cls)


def test_class_defined_inside_a_function_is_found(make_package):
    files = {
        "__init__.py": "",
        "tasks.py": """
            import luigi

            def factory():
                class Inner(luigi.Task):
                    def run(self):
                        return 1
                return Inner
            """,
    }
    one = importlib.import_module(f"{make_package(files)}.tasks").factory()
    two = importlib.import_module(f"{make_package(edited(files, 'tasks.py', 'return 1', 'return 2'))}.tasks").factory()
    assert class_code_hash(one) != class_code_hash(two)


def test_class_without_source_is_a_clear_error():
    import luigi

    dynamic = type("Made", (luigi.Task,), {"__module__": "no_such_module_xyz"})
    with pytest.raises(CodeHashError, match="cannot find the source of task class no_such_module_xyz.Made"):
        class_code_hash(dynamic)


def test_edit_in_place_is_seen_without_clearing_caches(make_package, tmp_path):
    package = make_package(BASE)
    before = hash_of(package)
    helpers = tmp_path / package / "helpers.py"
    helpers.write_text(helpers.read_text().replace("SCALE = 10", "SCALE = 12345"))
    stat = helpers.stat()
    os.utime(helpers, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert hash_of(package) != before
