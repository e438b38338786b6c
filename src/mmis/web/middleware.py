"""Chinese first: the language is the one the user chose (cookie set by /i18n/setlang/), else
LANGUAGE_CODE (zh-hans). The browser's Accept-Language is ignored, so a service-hall PC with an
English browser still opens MMIS in Chinese. Use in place of Django's LocaleMiddleware."""

from __future__ import annotations

from django.conf import settings
from django.middleware.locale import LocaleMiddleware
from django.utils import translation


class ChineseFirstLocaleMiddleware(LocaleMiddleware):
    def process_request(self, request):
        code = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) or settings.LANGUAGE_CODE
        try:
            language = translation.get_supported_language_variant(code)
        except LookupError:
            language = settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
