"""The raster engine: the grid value and its rules (:mod:`~geocopgen.raster.grid`), chip tiling
(:mod:`~geocopgen.raster.chips`) and the streaming mosaic writer (:mod:`~geocopgen.raster.mosaic`).

The submodules are imported where they are used; this package imports nothing itself, so
``import geocopgen.raster.grid`` stays cheap.
"""
