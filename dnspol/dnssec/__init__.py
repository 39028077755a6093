"""DNSSEC: signing zones at load (``sign``, ``keys``, ``policy``)."""
