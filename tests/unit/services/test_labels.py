"""The built-in process wording is in the English catalogue (services/labels.py under context "process")."""

import re
from decimal import Decimal

import pytest
from django.utils import translation

from mmis.services.commitments import COMMITMENTS
from mmis.services.definitions import DEFINITIONS
from mmis.services.labels import LABELS
from mmis.web.templatetags.mmis_web import process_label

HAN = re.compile(r"[\u4e00-\u9fff]")


def _wording(x, out):
    if isinstance(x, dict):
        for v in x.values():
            _wording(v, out)
    elif isinstance(x, list | tuple):
        for v in x:
            _wording(v, out)
    elif isinstance(x, str) and HAN.search(x):
        out.add(x)
    return out


def test_every_chinese_text_of_the_definitions_and_commitments_is_listed():
    wording = _wording(DEFINITIONS, set())
    for c in COMMITMENTS.values():
        wording |= {c.name, c.source}
    missing = sorted(wording - set(LABELS))
    assert not missing, f"add to services/labels.py (and the en catalogue): {missing}"


def test_every_listed_label_has_an_english_translation():
    with translation.override("en"):
        untranslated = [s for s in LABELS if process_label(s) == s or HAN.search(process_label(s))]
    assert not untranslated


def test_process_label_in_both_languages_and_on_other_values():
    with translation.override("en"):
        assert process_label("现场勘查") == "Site survey"
        assert process_label("业务受理") == "Application acceptance"
        assert translation.gettext("业务受理") == "Applications"  # the menu item keeps its own wording
        assert process_label("某省自定义环节") == "某省自定义环节"
        assert process_label(Decimal("12.50")) == Decimal("12.50")
        assert process_label("") == ""
    with translation.override("zh-hans"):
        assert process_label("现场勘查") == "现场勘查"


@pytest.mark.parametrize("language, expected", [("en", "Late"), ("zh-hans", "超时")])
def test_late_column_has_its_own_context(language, expected):
    with translation.override(language):
        assert translation.pgettext("late", "超时") == expected
