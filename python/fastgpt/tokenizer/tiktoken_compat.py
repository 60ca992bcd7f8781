"""`patch_tiktoken()`: code written for tiktoken runs, unchanged, on fastgpt's encoder.

    >>> import fastgpt, tiktoken                # doctest: +SKIP
    >>> fastgpt.patch_tiktoken()
    >>> tiktoken.get_encoding("gpt2")           # now a fastgpt.Tokenizer
    >>> fastgpt.unpatch_tiktoken()              # tiktoken's own again

After the patch, `tiktoken.get_encoding`, `tiktoken.encoding_for_model` and
`tiktoken.Encoding(...)` (so also `tiktoken.core.Encoding` and the functions in
`tiktoken.registry` and `tiktoken.model`) give `fastgpt.Tokenizer`s. Encodings that fastgpt
does not know but a tiktoken plugin defines are built from the plugin's definition.
"""

from __future__ import annotations

import threading
from typing import Any

from fastgpt.tokenizer import registry
from fastgpt.tokenizer.core import Tokenizer

_lock = threading.Lock()
# (module, attribute) -> tiktoken's original, while patched.
_originals: dict[tuple[Any, str], Any] = {}


def _get_encoding(encoding_name: str) -> Tokenizer:
    if isinstance(encoding_name, str) and encoding_name not in registry.SPECS:
        return _from_plugin(encoding_name)
    return registry.get_encoding(encoding_name)


_plugin_encodings: dict[str, Tokenizer] = {}


def _from_plugin(name: str) -> Tokenizer:
    """An encoding only a tiktoken plugin defines: its definition, fastgpt's encoder."""
    import tiktoken.registry as tk_registry

    with _lock:
        if name in _plugin_encodings:
            return _plugin_encodings[name]
        if tk_registry.ENCODING_CONSTRUCTORS is None:
            tk_registry._find_constructors()
        constructors = tk_registry.ENCODING_CONSTRUCTORS or {}
        if name not in constructors:
            raise ValueError(f"Unknown encoding {name}; known: {', '.join([*registry.SPECS, *constructors])}")
        enc = Tokenizer(**constructors[name]())
        _plugin_encodings[name] = enc
        return enc


def _list_encoding_names() -> list[str]:
    import tiktoken.registry as tk_registry

    names = list(registry.SPECS)
    try:
        names += [n for n in _originals[(tk_registry, "list_encoding_names")]() if n not in registry.SPECS]
    except Exception:  # a broken plugin is tiktoken's business; fastgpt's names still list
        pass
    return names


def _encoding_for_model(model_name: str) -> Tokenizer:
    # The installed tiktoken's model table may know newer models than fastgpt's.
    import tiktoken.model as tk_model

    return _get_encoding(tk_model.encoding_name_for_model(model_name))


def is_patched() -> bool:
    return bool(_originals)


def patch_tiktoken() -> None:
    """Makes tiktoken hand out fastgpt encoders (see the module doc). Calling it twice is
    harmless; `unpatch_tiktoken` undoes it."""
    try:
        import tiktoken
    except ImportError:
        raise ImportError("patch_tiktoken: tiktoken is not installed, so there is nothing to patch") from None
    import tiktoken.core
    import tiktoken.model
    import tiktoken.registry

    replacements = {
        (tiktoken, "Encoding"): Tokenizer,
        (tiktoken.core, "Encoding"): Tokenizer,
        (tiktoken, "get_encoding"): _get_encoding,
        (tiktoken.registry, "get_encoding"): _get_encoding,
        (tiktoken.model, "get_encoding"): _get_encoding,
        (tiktoken, "encoding_for_model"): _encoding_for_model,
        (tiktoken.model, "encoding_for_model"): _encoding_for_model,
        (tiktoken, "list_encoding_names"): _list_encoding_names,
        (tiktoken.registry, "list_encoding_names"): _list_encoding_names,
    }
    with _lock:
        if _originals:
            return
        for (module, attribute), replacement in replacements.items():
            _originals[(module, attribute)] = getattr(module, attribute)
            setattr(module, attribute, replacement)


def unpatch_tiktoken() -> None:
    """Gives tiktoken its own functions and `Encoding` back."""
    with _lock:
        for (module, attribute), original in _originals.items():
            setattr(module, attribute, original)
        _originals.clear()
