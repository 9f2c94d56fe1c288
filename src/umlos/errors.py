"""The UML_OS error tree.

One root, :class:`Error`; one base class per subsystem; one class per catalogue code
(``contracts/errors.yaml``), generated into :mod:`umlos._generated.errors`.

>>> from umlos.errors import ContractViolationError, Error
>>> issubclass(ContractViolationError, Error)
True
"""

from umlos._errorbase import Error
from umlos._generated.errors import *  # noqa: F403
from umlos._generated.errors import __all__ as _generated_all

__all__ = ["Error", *_generated_all]  # noqa: PLE0604 - generated names are strings
