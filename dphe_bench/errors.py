"""Exceptions raised by dphe-bench.

Every error a caller can trigger with bad input is one of these, so a caller can catch
``DpheError`` for all of them or a specific class for one case. Each also derives from the
built-in exception it refines (``ValueError``, ``OverflowError``, ``RuntimeError``, ``OSError``).
``plain_list`` and ``unknown_name`` word the messages that list names.
"""

import difflib
from collections.abc import Iterable


class DpheError(Exception):
    """Base class of every dphe-bench error."""


class KeyMismatchError(DpheError, ValueError):
    """Ciphertexts or a message made under one public key were used with another."""


class CiphertextError(DpheError, ValueError):
    """A ciphertext is outside [1, n^2), not invertible mod n^2, or a batch is malformed."""


class PlaintextRangeError(DpheError, ValueError):
    """A plaintext integer is outside [0, n)."""


class EncodingOverflowError(DpheError, OverflowError):
    """A real value is too large (or not finite) for the fixed-point encoding, or a decoded sum overflowed."""


class MessageFormatError(DpheError, ValueError):
    """A serialised message is malformed, truncated, of an unknown version or of the wrong kind."""


class PermutationError(DpheError, ValueError):
    """An array that should be a permutation of 0..D-1 is not one."""


class ProtocolError(DpheError, ValueError):
    """A party received something the protocol forbids: bad indices, wrong dimension, unknown user, replay."""


class ConfigError(DpheError, ValueError):
    """A configuration file or override is invalid."""


class ObfuscatorPoolError(DpheError, RuntimeError):
    """A ``pool`` backend was asked to encrypt more values than it has precomputed obfuscators for."""


class BackendUnavailableError(DpheError, RuntimeError):
    """A crypto backend was requested that cannot run on this machine."""


class DestinationError(DpheError, OSError):
    """A file or folder that results are to be written to cannot be created or written."""


def plain_list(items: Iterable[object]) -> str:
    """Items as plain text for an error message: ``a, b, c`` (never a Python list's repr)."""
    return ", ".join(str(item) for item in items)


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> str:
    """``unknown KIND 'name' (did you mean 'x'?); valid KINDs: a, b`` with the closest valid name (difflib)."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid {kind}s: {plain_list(valid) or 'none'}"
