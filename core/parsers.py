"""The REST API's JSON body parser: DRF's, with a body nested too deeply for the decoder answered as a
parse error (400 `parse_error`, docs/protocol.md §17.1) instead of a `RecursionError` and a 500."""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser


class JSONParser(DRFJSONParser):
    """`application/json` bodies, as DRF parses them; raises `ParseError` for invalid JSON and for JSON
    nested deeper than Python's decoder can recurse (about 1,000 levels; a 2 KB body reaches it)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        """The decoded body; `ParseError` (HTTP 400) when it is not JSON or nests too deeply."""
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body nests too deeply") from None
