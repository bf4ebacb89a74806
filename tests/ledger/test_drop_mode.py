"""Drop-folder notices get notices.drop_file_mode, not mkstemp's 0600: the ISP's pickup must read them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tracker_watch.config import ConfigError, NoticeSettings, settings_from_mapping
from tracker_watch.ledger.outbox import _drop


@pytest.mark.parametrize("mode", ["0640", "0644", "600"])
def test_drop_files_get_the_configured_mode(tmp_path: Path, mode: str) -> None:
    settings = settings_from_mapping({"notices": {"drop_file_mode": mode}}).notices
    _drop(tmp_path, "tracker-watch-strike-1", {"xml": "<x/>", "json": "{}"}, int(settings.drop_file_mode, 8))
    for ext in ("xml", "json"):
        assert stat.S_IMODE((tmp_path / f"tracker-watch-strike-1.{ext}").stat().st_mode) == int(mode, 8)
    assert NoticeSettings().drop_file_mode == "0640"


@pytest.mark.parametrize("mode", ["0999", "rw-r-----", "17777", ""])
def test_a_bad_mode_is_a_config_error(mode: str) -> None:
    with pytest.raises(ConfigError, match=r"notices\.drop_file_mode"):
        settings_from_mapping({"notices": {"drop_file_mode": mode}})
