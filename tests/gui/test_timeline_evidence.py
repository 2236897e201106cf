"""时间线's 依据 column reads Chinese for every item the timeline knows (no record path in English)."""

from kd.core.timelinerules import KNOWN
from kd.views.timeline import EVIDENCE


def test_every_known_item_has_a_chinese_evidence_text():
    missing = [i for i in KNOWN if i not in EVIDENCE]
    assert missing == []  # site_clock and skew showed their record paths in English (27_timeline)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in EVIDENCE[i]) for i in KNOWN)
