"""The display-text guard through its public entry point: every disguising character is refused."""

from __future__ import annotations

import pytest

from app.errors import InvalidArgument
from app.guards.display_text import ALLOWED_CONTROLS, REFUSED_DISPLAY_CHARACTERS, require_displayable


class TestDisplayTextGuard:
    def test_every_c0_c1_and_bidi_control_but_newline_and_tab_is_refused(self):
        controls = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F),
                                     *range(0x2066, 0x206A))]
        for character in controls:
            if character in ALLOWED_CONTROLS:
                assert require_displayable("message", f"a{character}b")
                continue
            with pytest.raises(InvalidArgument, match=f"U\\+{ord(character):04X} at position 1"):
                require_displayable("message", f"a{character}b")
        assert len(REFUSED_DISPLAY_CHARACTERS) == len(controls) - len(ALLOWED_CONTROLS)

    def test_ordinary_unicode_is_displayable(self):
        assert require_displayable("message", "Café ✓ 日本語 — ok") == "Café ✓ 日本語 — ok"
