import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmis.settings")
application = get_wsgi_application()

# Load every view module now, then move what the process holds (Django, the app, its URLconf)
# out of the collector's sight: otherwise each full collection walks ~1M long-lived objects and
# stalls every request thread of the worker for ~100 ms about once a second under load.
_ = get_resolver().url_patterns
gc.freeze()
