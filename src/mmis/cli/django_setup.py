"""Set up Django for the operations commands (the contract commands never import this)."""

import os


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmis.settings")
    import django

    django.setup()
