"""Zones: the data model, the zone-file loader and the longest-suffix zone set."""
