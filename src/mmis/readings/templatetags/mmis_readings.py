"""Small template helpers of the reading pages."""

from django import template

register = template.Library()


@register.filter
def get_list(mapping, key):
    if mapping is None:
        return []
    if hasattr(mapping, "get"):
        return mapping.get(key, []) if not isinstance(mapping, str) else ""
    return []


@register.filter
def split(text):
    return str(text).split()


@register.filter
def field_value(post, name):
    """{point id: posted value} of one value column of the bulk form."""
    if not post:
        return {}
    out = {}
    prefix = f"{name}_"
    for k, v in post.items():
        if k.startswith(prefix) and k[len(prefix) :].isdigit():
            out[int(k[len(prefix) :])] = v
    return out


@register.filter
def pick(mapping, key):
    return mapping.get(key, "") if hasattr(mapping, "get") else ""
