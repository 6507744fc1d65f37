"""The modality registry: names, band layouts, invertible normalisation and the S2 offset rules."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geocopgen.errors import BandMismatchError, OffsetWarning, UnknownModalityError
from geocopgen.modalities import (
    MODALITIES,
    OFFICIAL_ORDER,
    db_to_linear,
    dn_to_reflectance,
    get_modality,
    linear_to_db,
    reflectance_to_dn,
    s2_offset,
)

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
MAJORTOM = DATA / "majortom" / "Core-S2L2A"


def test_registry_layout() -> None:
    assert set(OFFICIAL_ORDER) <= set(MODALITIES)  # COP-GEN-Beta's four, and COP-GEN's classes
    assert [m for m in MODALITIES if get_modality(m).categorical] == ["lulc", "cloud_mask"]
    assert get_modality("S2L1C").n_bands == 13
    assert get_modality("l2a").n_bands == 12
    assert "B10" in get_modality("s2l1c").band_names
    assert "B10" not in get_modality("s2l2a").band_names
    assert get_modality("S1").band_names == ("VV", "VH")
    assert get_modality("dem").native_resolution == 30.0
    with pytest.raises(UnknownModalityError, match="landsat"):
        get_modality("landsat")


@pytest.mark.parametrize("name", sorted(MODALITIES))
def test_normalisation_is_exactly_invertible(name: str) -> None:
    mod = get_modality(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, mod.n_bands, 8, 8)).astype(np.float64)
    np.testing.assert_allclose(mod.denormalize(mod.normalize(x, axis=1), axis=1), x, atol=1e-12)
    t = torch.from_numpy(x)
    torch.testing.assert_close(mod.denormalize(mod.normalize(t, axis=1), axis=1), t)
    with pytest.raises(BandMismatchError, match=mod.long_name):
        mod.normalize(np.concatenate([x, x[:, :1]], axis=1), axis=1)
    inplace = x.astype(np.float32)
    expected = mod.normalize(inplace, axis=1)
    assert mod.normalize(inplace, axis=1, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)  # the same float32 arithmetic, in place


def test_s1_db_linear_round_trip_and_non_positive_power() -> None:
    db = np.array([-25.0, -12.5, 0.0, 3.0])
    np.testing.assert_allclose(linear_to_db(db_to_linear(db)), db, atol=1e-12)
    assert np.isnan(linear_to_db(np.array([0.0, -1.0]))).all()


def test_s2_offset_rules() -> None:
    assert s2_offset(tags={"BOA_ADD_OFFSET": "-1000"}) == -1000
    assert s2_offset(product_id="S2B_MSIL1C_20210101T000000_N0300_R001_T31UDQ_20210101T1") == 0
    assert s2_offset(acquired="2022-01-25") == -1000
    assert s2_offset(acquired="2022-01-24T23:59:59Z") == 0
    with pytest.warns(OffsetWarning, match="--s2-offset"):
        assert s2_offset(source="tile.tif") == 0


@pytest.mark.parametrize("cell", ["0U/0U_199R", "199U/199U_1099R"])
def test_offset_decision_agrees_with_dark_pixels_of_real_cells(cell: str) -> None:
    """The product id decides the offset; the darkest real pixels confirm it independently."""
    (product,) = (MAJORTOM / cell).iterdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", OffsetWarning)
        offset = s2_offset(product_id=product.name)
    with rasterio.open(product / "B02.tif") as src:
        dn = src.read(1).astype(np.float64)
    darkest = np.percentile(dn[dn > 0], 0.1)
    assert (offset == -1000) == (darkest >= 1000)
    reflectance = dn_to_reflectance(dn, offset)
    assert 0.0 <= np.percentile(reflectance, 0.1) < 0.15  # dark surfaces are dark, not negative
    np.testing.assert_allclose(reflectance_to_dn(reflectance, offset), dn, atol=1e-9)
