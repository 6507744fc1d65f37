"""The model world: latent codecs, the multimodal U-ViT, schedulers, sampling, save/load.

Tensors only: images here are normalised model units ``(B, C, H, W)``
(``Modality.normalize(x, axis=1)``); georeferencing is handled by the callers. The exception is
:mod:`geocopgen.models.thumbnails`, which turns physical arrays into the 8-bit Major TOM
thumbnails the official weights take.
"""

from geocopgen.models.autoencoder import (
    SD_SCALING_FACTOR,
    LatentCodecMixin,
    ModalityAutoencoder,
    ThumbnailAutoencoder,
    fit_scaling_factor,
    sample_latents,
)
from geocopgen.models.checkpoints import LoadReport, load_checked, load_model, save_model
from geocopgen.models.objective import (
    LossOutput,
    RoleProbabilities,
    Roles,
    diffusion_loss,
    draw_roles,
)
from geocopgen.models.pipeline import CopGenPipeline, PipelineOutput
from geocopgen.models.sampling import (
    SamplingOutput,
    generators_from_seeds,
    predict_model_output,
    sample,
    sample_chain,
    start_index,
)
from geocopgen.models.schedule import (
    default_scheduler,
    model_timestep,
    official_scheduler,
    training_scheduler,
)
from geocopgen.models.thumbnails import (
    centre_tiles,
    dem_hillshade,
    s1_rtc_thumbnail,
    s2_rgb_thumbnail,
    to_model_range,
    upsample_dem_thumbnail,
)
from geocopgen.models.uvit import BackboneOutput, MultimodalUViT

__all__ = [
    "SD_SCALING_FACTOR",
    "BackboneOutput",
    "CopGenPipeline",
    "LatentCodecMixin",
    "LoadReport",
    "LossOutput",
    "ModalityAutoencoder",
    "MultimodalUViT",
    "PipelineOutput",
    "RoleProbabilities",
    "Roles",
    "SamplingOutput",
    "ThumbnailAutoencoder",
    "centre_tiles",
    "default_scheduler",
    "dem_hillshade",
    "diffusion_loss",
    "draw_roles",
    "fit_scaling_factor",
    "generators_from_seeds",
    "load_checked",
    "load_model",
    "model_timestep",
    "official_scheduler",
    "predict_model_output",
    "s1_rtc_thumbnail",
    "s2_rgb_thumbnail",
    "sample",
    "sample_chain",
    "sample_latents",
    "save_model",
    "start_index",
    "to_model_range",
    "training_scheduler",
    "upsample_dem_thumbnail",
]
