"""gen package: presets, Verilog emission, host-side packing, the configuration options."""

#: The project version (the same as ``project.version`` in pyproject.toml, checked by a test).
__version__ = "0.2.0.dev0"
