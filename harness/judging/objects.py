"""The `objects:` judge: objects counted, coloured and placed by an open-vocabulary detector (being written)."""
