"""The one exception type the CLI turns into a clean one-line message."""


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
