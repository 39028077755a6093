"""Zones: the data model, the zone-file loader and the longest-suffix zone set.

``loader`` is the way in (load a file or text, get a validated ``Zone``); it
reads with ``fastreader`` (simple lines) and ``reader`` (dnspython's Reader,
everything else), converts rdata with ``rdata``, checks with ``validation``
and holds each zone to ``limits``. ``model`` is the compiled zone, ``lookup``
answers from it.
"""
