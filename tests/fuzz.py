"""Property tests that run briefly in every `make test` and long under `make fuzz`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings

LONG = int(os.environ.get("XENLAB_FUZZ_EXAMPLES", "2000"))  # `make fuzz` (-m slow)


def quick_and_long_with(quick: int) -> Callable[..., Any]:
    """A decorator maker: property ``_name`` becomes ``test_name`` (*quick* examples, make test) and
    ``test_name_long`` (LONG examples, marked slow, skipped unless XENLAB_FUZZ_EXAMPLES is set)."""

    def quick_and_long(*strategies: Any) -> Any:
        def deco(fn: Any) -> Any:
            name = "test" + fn.__name__
            fn.__globals__[name] = settings(max_examples=quick, deadline=None)(given(*strategies)(fn))
            long = settings(max_examples=LONG, deadline=None)(given(*strategies)(fn))
            skip = pytest.mark.skipif("XENLAB_FUZZ_EXAMPLES" not in os.environ, reason="long run: make fuzz")
            fn.__globals__[name + "_long"] = pytest.mark.slow(skip(long))
            return fn
        return deco

    return quick_and_long
