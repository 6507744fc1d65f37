"""Recipe: Major TOM cells (folder or parquet; ids, bbox, dates, clouds) → zarr latents.

Same options as `geocopgen encode majortom --help`.

Rerunning the same command resumes a killed run; new places are appended to the store.
"""

import sys

from geocopgen.cli.data import encode_app

if __name__ == "__main__":
    encode_app(["majortom", *sys.argv[1:]], prog_name="majortom_to_zarr.py")
