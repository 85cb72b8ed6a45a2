"""Downloads that resume, verify checksums, write atomically, and extract archives safely.

- ``download``: bytes go to ``DEST.part``; an interrupted download resumes with an HTTP Range
  request (or restarts when the server ignores it); the checksum is verified before the file is
  renamed to ``DEST``, so a file at ``DEST`` is always complete and verified.
- ``extract``: zip or tar, into a temporary folder renamed into place when complete; members
  with absolute paths, ``..`` components or links pointing outside the target are refused.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .io import sha256_file

__all__ = ["DownloadError", "ChecksumError", "UnsafeArchiveError", "download", "extract"]


class DownloadError(RuntimeError):
    pass


class ChecksumError(DownloadError):
    pass


class UnsafeArchiveError(ValueError):
    pass


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None,
             timeout: float = 60.0, progress: bool = True, chunk: int = 1 << 20) -> Path:
    """Fetch ``url`` to ``dest``; return ``dest``. Skips the transfer if ``dest`` is verified."""
    dest = Path(dest)
    if dest.exists():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        dest.unlink()  # a stale or corrupted file: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    total = None
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = offset > 0 and response.status == 206
            if offset and not resumed:
                offset = 0  # the server sent the whole file: restart
            total = response.headers.get("Content-Length")
            total = int(total) + offset if total is not None else None
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name,
                disable=not progress) as bar:
                while block := response.read(chunk):
                    f.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        if isinstance(err, urllib.error.HTTPError) and err.code == 416:
            pass  # Range past the end: the part file is already whole; verify below
        else:
            raise DownloadError(f"download of {url} to {dest} failed ({err}); re-run to resume "
                                f"from {part}") from err
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"download of {url} stopped at {part.stat().st_size} of {total} "
                            f"bytes; re-run to resume from {part}")
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise ChecksumError(f"checksum mismatch for {url}: expected sha256 {sha256}, "
                                f"got {got}; the partial file was removed")
    os.replace(part, dest)
    return dest


def _check_member(name: str, target: Path) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")):
        raise UnsafeArchiveError(f"archive member {name!r} would land outside {target}")


def extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract ``archive`` (zip, tar, tar.gz, ...) into ``target`` atomically; return ``target``."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(name, target)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    _check_member(member.name, target)
                    if member.issym() or member.islnk():
                        _check_member(str(PurePosixPath(member.name).parent / member.linkname),
                                      target)
                    if member.isdev():
                        raise UnsafeArchiveError(f"archive member {member.name!r} is a device")
                tf.extractall(tmp, filter="data")
        else:
            raise UnsafeArchiveError(f"{archive} is neither a zip nor a tar archive")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
