"""The API's JSON response: compact, ASCII-only, never NaN.

ASCII because stored step results may hold lone surrogates (they round-trip through the store as
``\\ud800`` escapes); rendering them as escapes keeps every answer encodable.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["JsonResponse"]


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")
