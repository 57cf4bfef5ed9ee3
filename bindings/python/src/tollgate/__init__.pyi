"""Type stubs of the tollgate package."""

from typing import List, Union

from ._errors import AuthError as AuthError
from ._errors import BusyError as BusyError
from ._errors import Error as Error
from ._errors import InvalidArgument as InvalidArgument
from ._errors import LeaseLost as LeaseLost
from ._errors import NothingToRefund as NothingToRefund
from ._errors import ProtocolError as ProtocolError
from ._errors import TLSError as TLSError
from ._errors import TollgateConnectionError as TollgateConnectionError
from ._errors import TollgateTimeoutError as TollgateTimeoutError
from ._errors import UnsupportedError as UnsupportedError
from ._leases import LeaseContext as LeaseContext
from ._leases import LeaseDenied as LeaseDenied
from ._leases import LeaseResult as LeaseResult
from ._metrics import MetricSample as MetricSample
from ._native import Decision as Decision
from ._native import Lease as Lease
from ._native import Limiter as Limiter
from ._native import Policy as Policy
from ._native import rate_limit_headers as rate_limit_headers
from ._types import KeyState as KeyState

__version__: str
LIBRARY_VERSION: str
Key = Union[str, bytes]
__all__: List[str]
