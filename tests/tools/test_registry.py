"""Tools by name: building with settings, and settings a tool does not have."""

from __future__ import annotations

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.tools.registry import TOOLS, build_tool, default_tools


def test_every_tool_builds_with_its_defaults():
    assert [t.name for t in default_tools("deepresearch")] == ["code", "image_search", "text_search", "web_visit"]
    assert set(TOOLS) == {t.name for t in default_tools("deepresearch")}


def test_settings_reach_the_constructor():
    assert build_tool("code", timeout_s=5).limits.time_s == 5


def test_an_unknown_setting_is_one_line_naming_the_real_ones():
    with pytest.raises(UsageError, match=r"code has no setting bogus; its settings are: timeout_s, ") as err:
        build_tool("code", bogus=1)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="unknown tool 'telepathy'"):
        build_tool("telepathy")
