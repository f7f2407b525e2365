"""The one header of our own, the request id, as HTTP uses it.

As multidict's `istr`, as aiohttp's own header names are: a case-insensitive lookup or
store then skips folding the name's case on every call.
"""

from multidict import istr

from daemon.request import REQUEST_ID_HEADER

REQUEST_ID = istr(REQUEST_ID_HEADER)
