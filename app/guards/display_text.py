"""Display-text guard: text a user must read and approve carries no character that hides or rewrites it.

Threat model:
    A confirmation prompt is only as good as what the user sees. A caller (an agent steered by
    prompt injection) may put terminal controls in a write's text so that the prompt shows one thing
    while the upstream receives another: a carriage return plus `ESC [2K` erases the real line in a
    terminal, C1 controls do the same in 8-bit terminals, and Unicode bidi overrides reorder what
    is rendered. So every user-visible field of a write is refused when it holds a C0 or C1 control
    (newline and tab excepted: they render as themselves), DEL, or a bidi embedding, override or
    isolate. ANSI escape sequences all start with ESC or the C1 CSI, so refusing those refuses every
    sequence. Refusing rather than escaping keeps one rule true: the prompt shows exactly the text
    that will be posted. The error names the code point and its position, never echoes the text.
"""

from __future__ import annotations

from typing import NoReturn

from app.errors import InvalidArgument

# Control characters that render as themselves in every prompt we know of.
ALLOWED_CONTROLS = frozenset("\n\t")
# C0 (U+0000-U+001F), DEL and C1 (U+0080-U+009F): cursor moves, line erases, ESC/CSI starts.
TERMINAL_CONTROLS = frozenset(chr(code) for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))) - ALLOWED_CONTROLS
# Unicode bidi embeddings/overrides (U+202A-U+202E) and isolates (U+2066-U+2069): they reorder display.
BIDI_CONTROLS = frozenset(chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
REFUSED_DISPLAY_CHARACTERS = TERMINAL_CONTROLS | BIDI_CONTROLS


def _reject(field: str, position: int, character: str) -> NoReturn:
    raise InvalidArgument(f"{field} contains a control or bidi character (U+{ord(character):04X} at position "
                          f"{position}); remove it: the user must see exactly what will be sent")


def require_displayable(field: str, value: str) -> str:
    """Return `value` unchanged, or refuse it when it holds a character that can disguise a prompt.

    Example:
        >>> require_displayable("message", "deploy finished\\n")
        'deploy finished\\n'
    """
    for position, character in enumerate(value):
        if character in REFUSED_DISPLAY_CHARACTERS:
            _reject(field, position, character)
    return value
