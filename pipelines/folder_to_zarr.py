"""Recipe: a folder of co-registered rasters (<root>/<MODALITY>/<name>.tif) → zarr latents.

Same options as `geocopgen encode folder --help`.

Rerunning the same command resumes a killed run; new places are appended to the store.
"""

import sys

from geocopgen.cli.data import encode_app

if __name__ == "__main__":
    encode_app(["folder", *sys.argv[1:]], prog_name="folder_to_zarr.py")
