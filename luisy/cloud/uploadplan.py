"""Which outputs an upload sends (pure: no I/O): the versions to store, the content the
content store lacks, the path objects to make, and the outputs held back
(:func:`plan_uploads`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from luisy.cloud.state import CloudState
from luisy.graph import Output
from luisy.hashfile import CloudEntry
from luisy.versions import named_digests
from luisy_sync.plan import plan_push
from luisy_sync.tree import Tree

HELD_REASON = ("its content differs from the cloud copy made by the same code; kept the cloud "
               "copy (rerun the task to replace it, or delete the local file and --download)")


@dataclass(frozen=True)
class UploadPlan:
    """What an upload does per key.

    ``entries``: the version to store (and make the latest) per key; ``content``: the
    local files whose content goes to the content store for the key (content no stored
    version names, each digest once); ``placed``: the path objects the key's path view
    needs (missing or other content at the path); ``held``: outputs not uploaded
    although they differ, key -> why (see plan_uploads)."""

    entries: dict[str, CloudEntry]
    content: dict[str, list[str]]
    placed: dict[str, list[str]] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys to upload, sorted."""
        return tuple(sorted(self.entries))

    def digests(self, key: str) -> set[str]:
        """The digests the version of ``key`` names."""
        return {f.digest for f in self.entries[key].files}

    def relied(self) -> dict[str, str]:
        """Digest -> a local file with that content, for the content the planned versions
        name but this upload does not put (a stored version names it)."""
        put = {fe.digest for key, entry in self.entries.items()
               for obj, fe in entry.objects(key).items() if obj in self.content[key]}
        out: dict[str, str] = {}
        for key, entry in sorted(self.entries.items()):
            for obj, fe in sorted(entry.objects(key).items()):
                if fe.digest is not None and fe.digest not in put:
                    out.setdefault(fe.digest, obj)
        return out


def _intact_other(state: CloudState, key: str, code_hash: str, entry: CloudEntry) -> bool:
    """Whether the cloud holds other content for ``key`` made by ``code_hash``, intact: a
    stored version, or the latest entry with its path objects as it names them."""
    version = state.versions.get(key, {}).get(code_hash)
    if version is not None:
        return version != entry
    cloud = state.entries.get(key)
    if cloud is None or cloud.code_hash != code_hash or cloud == entry:
        return False
    theirs = cloud.objects(key)
    return bool(theirs) and len(state.content_matches(theirs)) == len(theirs)


def plan_uploads(outputs: Iterable[Output], local: Tree, state: CloudState, *,
                 replace: Collection[str] | None = None) -> UploadPlan:
    """Pure: for ``outputs`` scanned into ``local``, the versions to store, the content
    the content store lacks and the path objects to make (``plan_push`` of ``local``
    onto the listing).

    An output uploads when its (key, code hash, content) is not a stored version, or when
    it is the latest entry and an object of it is missing from the listing or listed with
    another digest or size (the upload repairs the path view), or when the latest entry
    is a 1.4.7 entry of its code hash (rewritten with digests). Any other stored version
    is not uploaded again and does not become the latest.

    An output whose content differs from intact cloud content with the same code hash is
    only planned when its key is in ``replace`` (None: every key), e.g. because this run
    computed it; otherwise it is ``held``: a local file changed without a code change
    (truncated, edited by hand) never silently replaces a good cloud copy."""
    same = set(plan_push(local, state.objects).skip)
    named = named_digests(state.versions)
    entries: dict[str, CloudEntry] = {}
    content: dict[str, list[str]] = {}
    placed: dict[str, list[str]] = {}
    held: dict[str, str] = {}
    for out in sorted(outputs, key=lambda o: o.key):
        key = out.key
        entry = CloudEntry.describing(out.code_hash, key, out.is_dir, local)
        if entry is None:  # the caller passes existing outputs; a vanished file is skipped
            continue
        lacking = sorted(n for n in entry.objects(key) if n not in same)
        if state.versions.get(key, {}).get(out.code_hash) == entry:
            latest = state.entries.get(key)
            legacy = latest is not None and latest.legacy and latest.code_hash == out.code_hash
            if not (legacy or (latest == entry and lacking)):
                continue
        elif (replace is not None and key not in replace
              and _intact_other(state, key, out.code_hash, entry)):
            held[key] = HELD_REASON
            continue
        entries[key] = entry
        content[key] = []
        for obj, fe in sorted(entry.objects(key).items()):
            if fe.digest is not None and fe.digest not in named:
                named.add(fe.digest)
                content[key].append(obj)
        placed[key] = lacking
    return UploadPlan(entries, content, placed, held)
