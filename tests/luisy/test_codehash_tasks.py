"""Task-instance hashes (compute_task_hashes) and external package versions."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid

import pytest

from luisy.codehash import CodeHashError, class_code_hash, clear_caches, compute_task_hashes
from luisy.codehash.versions import REQUIREMENTS_ENV

PIPELINE = textwrap.dedent(
    """
    import luigi

    class Raw(luigi.ExternalTask):
        name = luigi.Parameter()

        def marker(self):
            return "raw"

    class Interim(luigi.Task):
        name = luigi.Parameter()

        def requires(self):
            return Raw(name=self.name)

    class Final(luigi.Task):
        def requires(self):
            return {"a": Interim(name="a"), "b": [Interim(name="b"), Raw(name="c")]}

    class Chain(luigi.Task):
        i = luigi.IntParameter()

        def requires(self):
            return Chain(i=self.i - 1) if self.i > 0 else []

    class Loop(luigi.Task):
        i = luigi.IntParameter()

        def requires(self):
            return Loop(i=(self.i + 1) % 2)
    """
)


@pytest.fixture
def load(tmp_path, monkeypatch):
    """Write ``source`` as a fresh module and import it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(REQUIREMENTS_ENV, raising=False)
    created = []

    def load(source: str):
        package = "chtask_" + uuid.uuid4().hex[:12]
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "pipeline.py").write_text(source)
        importlib.invalidate_caches()
        created.append(package)
        return importlib.import_module(f"{package}.pipeline")

    yield load
    for name in list(sys.modules):
        if name.split(".")[0] in created:
            del sys.modules[name]
    clear_caches()


def by_id(hashes):
    return {task.task_id.split("_")[0] + ":" + "/".join(map(str, task.param_kwargs.values())): h
            for task, h in hashes.items()}


def test_hashes_cover_every_upstream_task(load):
    module = load(PIPELINE)
    hashes = compute_task_hashes([module.Final()])
    assert set(by_id(hashes)) == {"Final:", "Interim:a", "Interim:b", "Raw:a", "Raw:b", "Raw:c"}
    assert all(len(h) == 32 for h in hashes.values())


# (edit in PIPELINE, task ids whose hash changes); everything else keeps its hash.
UPSTREAM_CASES = [
    ('return "raw"', 'return "RAW"', {"Raw:a", "Raw:b", "Raw:c", "Interim:a", "Interim:b", "Final:"}),
    ("return Raw(name=self.name)", "return Raw(name=self.name + '')", {"Interim:a", "Interim:b", "Final:"}),
    ('Raw(name="c")]', 'Raw(name="c"), Raw(name="d")]', {"Final:", "Raw:d"}),
    ('def marker(self):', 'def marker(self):\n        "Doc only."', set()),
]


@pytest.mark.parametrize("old, new, changed", UPSTREAM_CASES, ids=["raw", "interim", "final-deps", "docstring"])
def test_upstream_change_reaches_everything_downstream(load, old, new, changed):
    before = by_id(compute_task_hashes([load(PIPELINE).Final()]))
    assert old in PIPELINE
    after = by_id(compute_task_hashes([load(PIPELINE.replace(old, new)).Final()]))
    differing = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert differing == changed


def test_same_class_different_upstream_gives_different_instance_hash(load):
    module = load(PIPELINE)
    hashes = compute_task_hashes([module.Chain(i=0), module.Chain(i=1)])
    assert hashes[module.Chain(i=0)] != hashes[module.Chain(i=1)]


def test_deep_chain_has_no_recursion_limit(load):
    module = load(PIPELINE)
    depth = sys.getrecursionlimit() * 2
    hashes = compute_task_hashes([module.Chain(i=depth)])
    assert len(hashes) == depth + 1


def test_dependency_cycle_is_a_clear_error(load):
    module = load(PIPELINE)
    with pytest.raises(CodeHashError, match="cycle"):
        compute_task_hashes([module.Loop(i=0)])


USES_PANDAS = textwrap.dedent(
    """
    import luigi
    import pandas as pd
    from dateutil import parser

    class UsesPandas(luigi.Task):
        def run(self):
            return pd.DataFrame()

    class UsesDateutil(luigi.Task):
        def run(self):
            return parser.parse("2020-01-01")
    """
)


# (requirements file text A, text B, class, hashes equal?)
REQUIREMENT_CASES = [
    ("pandas==2.0.0\n", "pandas==2.1.0\n", "UsesPandas", False),
    ("pandas==2.0.0\nrich==1.0\n", "pandas==2.0.0  # pinned\nrich==2.0\n", "UsesPandas", True),
    ("luigi==3.0\n", "luigi==3.1\n", "UsesPandas", False),
    # dateutil is not listed, pandas requires it: pandas' pin counts
    ("pandas==2.0.0\n", "pandas==2.1.0\n", "UsesDateutil", False),
    ("python-dateutil==2.8\npandas==2.0\n", "python_dateutil==2.8\npandas==2.1\n", "UsesDateutil", True),
]


@pytest.mark.parametrize("text_a, text_b, cls, equal", REQUIREMENT_CASES)
def test_requirements_file_versions(load, tmp_path, monkeypatch, text_a, text_b, cls, equal):
    task_cls = getattr(load(USES_PANDAS), cls)
    digests = []
    for index, text in enumerate((text_a, text_b)):
        path = tmp_path / f"requirements-{index}.txt"
        path.write_text(text)
        monkeypatch.setenv(REQUIREMENTS_ENV, str(path))
        digests.append(class_code_hash(task_cls))
    assert (digests[0] == digests[1]) is equal


def test_installed_versions_used_without_requirements_file(load, tmp_path, monkeypatch):
    task_cls = load(USES_PANDAS).UsesPandas
    installed = class_code_hash(task_cls)
    path = tmp_path / "requirements.txt"
    path.write_text("pandas==0.0.1\n")
    monkeypatch.setenv(REQUIREMENTS_ENV, str(path))
    assert class_code_hash(task_cls) != installed
    monkeypatch.delenv(REQUIREMENTS_ENV)
    assert class_code_hash(task_cls) == installed


def test_missing_requirements_file_is_a_clear_error(load, tmp_path, monkeypatch):
    task_cls = load(USES_PANDAS).UsesPandas
    monkeypatch.setenv(REQUIREMENTS_ENV, str(tmp_path / "absent.txt"))
    with pytest.raises(CodeHashError, match=f"{REQUIREMENTS_ENV} points to .*absent.txt"):
        class_code_hash(task_cls)
