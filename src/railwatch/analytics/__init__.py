"""Analytics: counts in their history (timeline, baselines, onsets, mix, crossing, alerts).

Submodules are imported on demand: ``railwatch.analytics.timeline``, ``.onsets``,
``.mix``, ``.crossing``, ``.observe``, ``.alerts``, ``.plot``.
"""
