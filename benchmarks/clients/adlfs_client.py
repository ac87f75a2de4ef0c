"""adlfs / fsspec: AzureBlobFileSystem from a connection string, recursive put/get."""

from __future__ import annotations

from benchmarks.clients import Target

NAME = "adlfs"


def unavailable() -> str | None:
    try:
        import adlfs  # noqa: F401
    except ImportError:
        return "not installed: pip install adlfs"
    return None


def _fs(target: Target):
    import adlfs

    # skip_instance_cache: every run gets its own client (no pooled state between jobs).
    return adlfs.AzureBlobFileSystem(connection_string=target.connection_string,
                                     skip_instance_cache=True)


def upload(src: str, target: Target, concurrency: int) -> None:
    _fs(target).put(src.rstrip("/") + "/", f"{target.container}/", recursive=True,
                    batch_size=concurrency)


def download(target: Target, dest: str, concurrency: int) -> None:
    _fs(target).get(f"{target.container}/", dest.rstrip("/") + "/", recursive=True,
                    batch_size=concurrency)
