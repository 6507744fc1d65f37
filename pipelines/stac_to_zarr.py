"""Recipe: a STAC search (Earth Search, Planetary Computer, ...) → zarr latents.

Same options as `geocopgen encode stac --help`.

Rerunning the same command resumes a killed run; new places are appended to the store.
"""

import sys

from geocopgen.cli.data import encode_app

if __name__ == "__main__":
    encode_app(["stac", *sys.argv[1:]], prog_name="stac_to_zarr.py")
