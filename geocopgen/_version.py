"""The package version, in a module of its own so that writers stamping it on their outputs
(the mosaic writer, saved pipelines) need not import the package root and its accessor."""

__version__ = "0.1.0.dev0"
