"""The field cipher for the customer file, keyed from settings.FIELD_KEY (MMIS_FIELD_KEY)."""

from functools import lru_cache

from django.conf import settings

from mmis.common.crypto import FieldCipher


@lru_cache(maxsize=4)
def _cipher(key: str) -> FieldCipher:
    return FieldCipher(key)


def cipher() -> FieldCipher:
    return _cipher(settings.FIELD_KEY)
