"""Pydantic's validation errors as llm_tts's typed errors: the one translation every face uses.

TTSConfig, ChatTTS's constructor, the server settings and the service's request bodies are all
validated by pydantic; :func:`typed_error` turns the first of its errors into the
:class:`~llm_tts.errors.LLMTTSError` a caller can act on (the field as ``param``, the rejected
value and the rule it broke), so a bad value reads the same whichever face it came through.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypedDict, Unpack

from pydantic import ValidationError

from llm_tts.errors import InvalidParameterError, LLMTTSError, MalformedJSONError, UnknownNameError

# Parts of an error's location that name the union member pydantic tried, not a field.
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "null"}


class Wording(TypedDict, total=False):
    """How one input's errors are worded; every key is optional."""

    names: Iterable[str]  # the valid names an unknown one is listed against
    kind: str  # what those names are ("parameter")
    whole: str  # the param that names the input itself ("input")
    whole_rule: str  # what the input itself must be
    refused: Mapping[str, str]  # names refused on purpose -> the reason a client is told instead of "unknown"
    hints: Mapping[str, str]  # field -> where it is set, added to its message
    secret: Collection[str]  # fields whose value is never echoed


def typed_error(errors: Sequence[Mapping[str, Any]], **wording: Unpack[Wording]) -> LLMTTSError:
    """The typed error for pydantic's ``errors`` (the first one: a client fixes one at a time)."""
    whole, whole_rule = wording.get("whole", "input"), wording.get("whole_rule")
    if not errors:
        return InvalidParameterError(whole, None, whole_rule or "could not be validated")
    err = errors[0]
    kind_of_error = err.get("type", "")
    raised = (err.get("ctx") or {}).get("error")
    if isinstance(raised, LLMTTSError):  # a validator of the model raised it, already typed
        return raised
    if kind_of_error == "json_invalid":
        pos = [p for p in err.get("loc", ()) if isinstance(p, int)]
        where = f" at character {pos[0]}" if pos else ""
        return MalformedJSONError(f"{(err.get('ctx') or {}).get('error', 'decode error')}{where}")
    param = _param_of(err.get("loc", ()))
    value = "***" if param in wording.get("secret", ()) else err.get("input")
    if not param:  # the input itself is wrong: not an object, or missing
        return InvalidParameterError(whole, value, whole_rule or str(err.get("msg", "invalid value")))
    name = param.rsplit(".", 1)[-1]
    if kind_of_error == "extra_forbidden":
        refused = wording.get("refused", {})
        if name in refused:
            return InvalidParameterError(param, value, refused[name])
        return UnknownNameError(wording.get("kind", "parameter"), name, list(wording.get("names", ())), param=param)
    rule = "this field is required" if kind_of_error == "missing" else str(err.get("msg", "invalid value"))
    hint = wording.get("hints", {}).get(param)
    return InvalidParameterError(
        param, None if kind_of_error == "missing" else value, f"{rule} ({hint})" if hint else rule
    )


@contextmanager
def typed_validation(**wording: Unpack[Wording]) -> Iterator[None]:
    """Validate inside this block: a pydantic ValidationError leaves it as :func:`typed_error`'s error."""
    try:
        yield
    except ValidationError as e:
        raise typed_error(e.errors(), **wording) from None


def _param_of(loc: Iterable[Any]) -> str:
    """('body', 'messages', 0, 'role') -> 'messages[0].role' (union member tags dropped)."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue  # FastAPI puts the request body first
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part) in _UNION_TAGS or "-" in str(part):
            continue  # pydantic names the union member it tried, e.g. 'list[str]'
        else:
            out += f".{part}" if out else str(part)
    return out
