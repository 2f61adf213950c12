"""The built-in YAML configs (models/, tasks/, runs/), shipped as package data of ``mirprobe``."""
