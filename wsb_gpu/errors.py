"""The one exception type the CLI turns into a clean one-line message, and the one line
an operating-system error becomes."""

import errno


class WsbError(Exception):
    """A user-facing error: what went wrong, the value received, and the fix.

    The CLI prints ``error: <message>`` and exits with status 2. Library code raises it
    for bad input and configuration; unexpected failures keep their own type and traceback.
    """


def missing_package(package: str, install: str, purpose: str) -> WsbError:
    """Build the error raised when an optional dependency cannot be imported.

    >>> str(missing_package("cudf", "pip install 'wsb_gpu[gpu]'", "the GPU backend"))
    "the GPU backend needs the package 'cudf', which is not installed; install it with: pip install 'wsb_gpu[gpu]'"
    """
    return WsbError(f"{purpose} needs the package '{package}', which is not installed; install it with: {install}")


GPU_INSTALL = "pip install 'wsb_gpu[gpu]' (or create the conda environment from environment.yml)"


def os_error_line(e: OSError) -> str:
    """One line for an operating-system error: what, on which path, and the likely fix.

    >>> import errno
    >>> os_error_line(OSError(errno.ENOSPC, "No space left on device", "/data/run"))
    "no space left on device (ENOSPC) writing '/data/run'; free some space or choose another --out / lake"
    """
    name = errno.errorcode.get(e.errno or 0, "")
    what = (e.strerror or str(e)).rstrip(".").lower()
    where = f" '{e.filename}'" if e.filename else ""
    fixes = {
        "ENOSPC": "free some space or choose another --out / lake",
        "EDQUOT": "free some space or choose another --out / lake",
        "EACCES": "check the permissions, or choose a folder you can write",
        "EPERM": "check the permissions, or choose a folder you can write",
        "EROFS": "the file system is read-only: choose another --out / lake",
        "ENOTDIR": "a part of the path is a file where a folder is needed: fix the path",
        "EISDIR": "the path is a folder where a file is needed: fix the path",
        "ENOENT": "check the path",
    }
    verb = " writing" if name in ("ENOSPC", "EDQUOT", "EROFS") else ""
    return f"{what} ({name or 'OSError'}){verb}{where}; {fixes.get(name, 'check the path and the disk')}"
