"""The one error shape of every refusal and failure, `{"error": "..."}` (one line, no stack trace), and the words
it is written in: what is wrong, which field, what was expected."""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

# what a request body looks like, quoted where one was malformed
EXAMPLES = {"/summarize": '{"reviews": ["first review", "second review"]}',
            "predict": '{"instances": [{"reviews": ["first review", "second review"]}]}'}


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {**({"Retry-After": str(retry_after)} if retry_after is not None else {}), **(headers or {})}


class ClientGone(Exception):
    """The client closed its connection before its answer was ready: nothing is sent, the request counts as 499."""


def error_body(message: str) -> bytes:
    return json.dumps({"error": " ".join(str(message).split())}).encode()


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers or None)


def validation_message(err: RequestValidationError, example: str) -> str:
    """A validation error in words a user can act on, the first problem first: the field, what was wrong, and what
    a good body looks like."""
    problems = []
    for e in err.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        kind = e.get("type", "")
        if kind == "json_invalid":
            context = e.get("ctx", {}).get("error", "")
            problems.append(f"the body is not valid JSON ({context}); send it like {example}")
        elif kind == "missing":
            problems.append(f"{where or 'the body'} is missing; send it like {example}")
        elif kind == "extra_forbidden":
            problems.append(f"{where} is not a field of this request; send it like {example}")
        elif kind in ("list_type", "string_type", "model_attributes_type", "dict_type"):
            expected = {"list_type": "a list", "string_type": "a text (a JSON string)"}.get(kind, "an object")
            problems.append(f"{where or 'the body'} must be {expected}; send it like {example}")
        else:
            problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(problems[:3]) or f"the request is not valid; send it like {example}"
