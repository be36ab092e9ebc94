"""The package's version, on its own so that any module can stamp it on a result without importing the package
(``xterramind/__init__.py`` imports the accessor and, through it, most modules).

Example:
    >>> from xterramind.version import __version__
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("xterramind")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
