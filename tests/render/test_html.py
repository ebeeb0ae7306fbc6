"""The HTML kit writes text a browser shows as written: no control characters anywhere."""

import re

from selfnas.render.html import CSS, page, tag


def test_a_page_holds_no_control_characters_and_the_nav_separator_is_a_css_escape():
    html = page("t", tag("p", "x"))
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", html)
    # CSS's escape for the middle dot, not a NUL byte followed by "b7"
    assert 'content: "\\00b7"' in CSS
