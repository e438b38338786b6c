from mmis.api.app import api

__all__ = ["api"]
