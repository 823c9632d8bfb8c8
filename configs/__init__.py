"""YAML configuration shipped with posttrain (defaults, model presets, one file per stage)."""
