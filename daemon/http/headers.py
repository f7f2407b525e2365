"""The one header of our own, X-Request-Id, named once.

As multidict's `istr`, as aiohttp's own header names are: a case-insensitive lookup or
store then skips folding the name's case on every call.
"""

from multidict import istr

REQUEST_ID = istr("X-Request-Id")
