"""Seeing a campaign: the self-contained HTML report (``page``) and the terminal views (``terminal``).

Submodules are imported where used: the report needs Matplotlib, the terminal views must start fast.
"""
