"""Error classes register their codes themselves: the table cannot miss one or hold two."""

from __future__ import annotations

import pytest

from llm_tts import errors
from llm_tts.errors import ERROR_CLASSES, BackendUnavailableError, LLMTTSError, ServiceError, error_class


def test_every_error_class_with_its_own_code_is_in_the_table_and_decodes_to_itself():
    own = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, LLMTTSError) and "code" in vars(c)]
    assert {c.code for c in own if c is not LLMTTSError} == set(ERROR_CLASSES)
    for cls in own:
        if cls is not LLMTTSError:
            assert error_class(cls.code) is cls
    assert error_class("no_such_code") is ServiceError


def test_a_subclass_elsewhere_keeps_its_parents_code_and_cannot_declare_one():
    class Derived(BackendUnavailableError):
        pass

    assert error_class(Derived.code) is BackendUnavailableError
    with pytest.raises(TypeError, match="declared in llm_tts.errors"):

        class Coded(LLMTTSError):
            code = "new_code"

    assert "new_code" not in ERROR_CLASSES
