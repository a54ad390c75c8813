"""The built-in devices: one module each (and, for a modeled device, one constants file beside it).

Every module here is imported by the registry; its ``@register_target`` class is all it needs to
appear in ``edgefer targets``, compare, search and the report.
"""
