"""Where imagery comes from: Major TOM datasets (folder or parquet) and STAC APIs.

Every source hands back lazy ModalityArrays (see ``geocopgen.io``): float32, physical units,
NaN for invalid pixels, rioxarray georeference, one modality per array.
"""

from geocopgen.sources.majortom import MajorTOM, common_cells

__all__ = ["MajorTOM", "common_cells"]
