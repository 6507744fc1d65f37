"""COP-GEN's normalisations against the official outputs (``normalisation_io.safetensors``, B5).

Tolerances: **exact** (``torch.equal``, NaN-aware) everywhere the official torch path runs, since
geocopgen uses the same float32 ops in the same order; measured: every entry exact. The official
NumPy path (``pre_numpy_path``) differs from the torch path by 1 ulp for S1 and DEM (NumPy's
log10/log1p/power), so those are compared within ``ONE_ULP`` (2.4e-7 at |y| < 2). geocopgen's
renormalising lat/lon decode is its own choice and differs from the official one by up to 1.2e-5
degrees on unit vectors (float32 norm), so it is compared at ``LATLON_RENORM_ATOL``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import TERRAMIND, terramind
from safetensors import safe_open
from safetensors.torch import load_file

from geocopgen.copgen import normalisation as N
from geocopgen.errors import InputError
from geocopgen.modalities import dn_to_reflectance

REF = (Path(__file__).parents[1] / ".." / "shared" / "reference" / "copgen-parity").resolve()
FILE = REF / "normalisation_io.safetensors"
ONE_ULP = 2.4e-7
LATLON_RENORM_ATOL = 2e-5
ONE_HOT = ("LULC_LULC", "S2L1C_cloud_mask")


def _meta() -> dict:
    with safe_open(FILE, "pt") as f:
        return json.loads(f.metadata()["json"])


ENTRIES = {name: e for name, e in _meta()["entries"].items() if "key" in e}


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(FILE)


def _same(a, b) -> bool:
    """Bit-equal, NaN equal to NaN, shapes and integer values included."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return False
    if a.is_floating_point() or b.is_floating_point():
        return a.dtype == b.dtype and torch.equal(a.nan_to_num(7.5), b.nan_to_num(7.5))
    return torch.equal(a.to(torch.int64), b.to(torch.int64))


def _pre(io, name: str):
    entry = ENTRIES[name]
    return N.to_model(io[f"{name}.input"], entry["key"], **entry["kwargs"])


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_pre_and_post_are_the_official_ones(io, name):
    pre, key = _pre(io, name), ENTRIES[name]["key"]
    assert _same(pre, io[f"{name}.pre"])
    post = N.from_model(pre.unsqueeze(0) if key in ONE_HOT else pre, key)
    assert _same(post, io[f"{name}.post_of_pre"])


NUMPY_DIFFERS = sorted(n for n, e in ENTRIES.items() if not e["numpy_path_equals_torch_path"])


@pytest.mark.parametrize("name", NUMPY_DIFFERS)
def test_the_official_numpy_path_is_one_ulp_away(io, name):
    numpy_path = io[f"{name}.pre_numpy_path"]
    assert (_pre(io, name) - numpy_path).abs().nan_to_num(0.0).max().item() <= ONE_ULP


@pytest.mark.parametrize("name", ["real.S2L2A_B02_B03_B04_B08", "real.S1RTC_vh_vv.db_input",
                                  "real.DEM_DEM", "real.LULC_LULC.esri_codes"])  # fmt: skip
def test_numpy_in_numpy_out_with_the_torch_arithmetic(io, name):
    entry = ENTRIES[name]
    out = N.to_model(io[f"{name}.input"].numpy(), entry["key"], **entry["kwargs"])
    assert isinstance(out, np.ndarray) and _same(torch.from_numpy(out), io[f"{name}.pre"])


@pytest.mark.parametrize("key", ["DEM_DEM", "S1RTC_vh_vv", "S2L2A_B02_B03_B04_B08"])
def test_post_processing_ramps_saturate_like_the_official_ones(io, key):
    assert _same(N.from_model(io[f"post_ramp.{key}.input"], key), io[f"post_ramp.{key}.post"])


def test_saturation_constants(io):
    assert io["post_ramp.DEM_DEM.post"].max().item() == N.DEM_MAX_M
    assert pytest.approx(8847.47, abs=5e-3) == N.DEM_MAX_M
    assert io["post_ramp.S1RTC_vh_vv.post"].max().item() == N.S1_MAX_POWER
    assert pytest.approx(10533.68, abs=5e-3) == N.S1_MAX_POWER


def test_lulc_logits_decode_by_argmax_first_index_on_ties(io):
    assert _same(
        N.lulc_from_model(io["post_logits.LULC_LULC.input"]), io["post_logits.LULC_LULC.post"]
    )
    tied = torch.zeros(1, 10, 1, 1)
    assert N.lulc_from_model(tied).item() == 0 and N.cloud_mask_from_model(tied[:, :4]).item() == 0


def test_one_hot_needs_one_band():
    with pytest.raises(InputError, match="one band"):
        N.lulc_to_model(torch.zeros(4, 4))


# --- lat/lon --------------------------------------------------------------------------------
def test_latlon_encoding_is_the_official_one(io):
    deg = io["latlon.input_deg"]
    assert _same(N.encode_latlon(deg[:, 0], deg[:, 1]), io["latlon.encoded"])
    pair = deg.to(torch.float32)
    assert _same(N.encode_latlon(pair[:, 0], pair[:, 1]), io["latlon.pre_from_float32_pair"])
    assert N.encode_latlon(0.0, 0.0).shape == (1, 1, 1, 3)


def test_latlon_official_decode_does_not_renormalise(io):
    official = N.decode_latlon(io["latlon.encoded"], renormalise=False)
    assert _same(official, io["latlon.post_of_encoded"])
    raw = N.decode_latlon(io["latlon.unnormalised_input"], renormalise=False)
    assert _same(raw, io["latlon.post_of_unnormalised"])


def test_latlon_default_decode_renormalises(io):
    on_unit = N.decode_latlon(io["latlon.encoded"])
    assert (on_unit - io["latlon.post_of_encoded"]).abs().max().item() <= LATLON_RENORM_ATOL
    scaled = N.decode_latlon(1.35 * io["latlon.encoded"])  # a non-unit vector, same direction
    assert (scaled - io["latlon.post_of_encoded"]).abs().max().item() <= LATLON_RENORM_ATOL
    biased = N.decode_latlon(io["latlon.unnormalised_input"], renormalise=False)
    assert (N.decode_latlon(io["latlon.unnormalised_input"]) - biased).abs().max() > 1.0


# --- dates ----------------------------------------------------------------------------------
def test_date_codec_is_the_official_one(io):
    days = [date(*ymd) for ymd in io["date.input_ymd"].tolist()]
    assert _same(N.encode_date(days), io["date.encoded"])
    assert _same(N.decode_date(io["date.encoded"]), io["date.post_of_encoded_dmy"])
    assert _same(N.decode_date(io["date.unnormalised_input"]), io["date.post_of_unnormalised_dmy"])
    assert _same(N.encode_timestamp(io["date.posix_input_utc"]), io["date.pre_from_posix_TZ_UTC"])


def test_dates_are_utc_whatever_the_local_time_zone(io):
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"  # where the official POSIX path is a day early (C5)
    time.tzset()
    try:
        assert _same(
            N.encode_timestamp(io["date.posix_input_utc"]), io["date.pre_from_posix_TZ_UTC"]
        )
    finally:
        os.environ.pop("TZ") if before is None else os.environ.__setitem__("TZ", before)
        time.tzset()
    ist = timezone(timedelta(hours=5, minutes=30))
    aware = datetime(2021, 7, 16, 0, 30, tzinfo=ist)  # 2021-07-15 19:00 UTC
    assert _same(N.encode_date(aware), N.encode_date(date(2021, 7, 15)))
    assert _same(N.encode_date("2021-07-15T23:30:00Z"), N.encode_date(date(2021, 7, 15)))


def test_a_non_finite_date_vector_is_an_input_error():
    with pytest.raises(InputError, match="not finite"):
        N.decode_date(torch.tensor([[[[0.0, float("nan"), 0.4]]]]))


# --- Sentinel-2 offset ----------------------------------------------------------------------
@pytest.mark.parametrize("offset", [0, -1000])
def test_dn_from_reflectance_puts_back_the_dn_copgen_saw(io, offset):
    name = "real.S2L2A_B02_B03_B04_B08"
    dn = io[f"{name}.input"]  # DN as stored, whichever baseline
    reflectance = dn_to_reflectance(dn.to(torch.float32), offset)  # what geocopgen's reader gives
    back = N.dn_from_reflectance(reflectance, offset, round_dn=True)
    assert torch.equal(back, dn.to(torch.float32))
    assert _same(N.to_model(back, "S2L2A_B02_B03_B04_B08"), io[f"{name}.pre"])
    assert N.dn_from_reflectance(np.array([0.5]), offset)[0] == 5000.0 - offset
    assert N.reflectance_from_dn(np.array([5000.0 - offset]), offset)[0] == 0.5


# --- LULC: ESRI codes or TerraMind indices --------------------------------------------------
def _lulc(place: str) -> np.ndarray:
    with rasterio.open(TERRAMIND / "LULC" / f"{place}.tif") as src:
        return src.read()


PLACES = sorted(p.stem for p in (TERRAMIND / "LULC").glob("*.tif"))


def test_terramind_indices_map_to_the_fixture_esri_codes(io):
    mapped = N.esri_from_terramind(io["real.LULC_LULC.terramind_values.input"])
    assert torch.equal(mapped, io["real.LULC_LULC.esri_codes.input"].to(torch.int64))
    assert N.lulc_as_esri(np.array([3, 6, 9, 12]), "terramind").tolist() == [4, 8, 11, 0]


def test_detection_on_the_real_terramind_tiles():
    assert len(PLACES) == 4
    # 282D_485L_3_3 holds index 6 (bare ground), which is no ESRI code: it tells on its own
    assert N.detect_lulc_scheme(_lulc("282D_485L_3_3")) == "terramind"
    for place in ("38D_378R_2_3", "609U_541L_3_0", "637U_59R_1_3"):  # values valid in both
        with pytest.raises(InputError, match="cannot tell"):
            N.detect_lulc_scheme(_lulc(place))
        assert N.detect_lulc_scheme(_lulc(place), hint="terramind") == "terramind"
    # the scheme belongs to the source: detected over all its tiles, it is TerraMind
    assert N.detect_lulc_scheme(*(_lulc(p) for p in PLACES)) == "terramind"


def test_detection_on_the_fixture_pair(io):
    assert N.detect_lulc_scheme(io["real.LULC_LULC.esri_codes.input"].numpy()) == "esri"
    values = io["real.LULC_LULC.terramind_values.input"].numpy()  # {4, 9}
    assert N.detect_lulc_scheme(values, default="terramind") == "terramind"


def test_detection_refuses_contradictions():
    with pytest.raises(InputError, match="only 'terramind'"):
        N.detect_lulc_scheme(_lulc("282D_485L_3_3"), hint="esri")
    with pytest.raises(InputError, match="mix"):
        N.detect_lulc_scheme(np.array([3, 11]))
    with pytest.raises(InputError, match="neither"):
        N.detect_lulc_scheme(np.array([1, 2, 200]))
    assert N.detect_lulc_scheme(np.array([1, 11, 255]), nodata=255) == "esri"


def test_scheme_from_tags():
    assert N.lulc_scheme_from_tags({"LULC_SCHEME": "TerraMind"}) == "terramind"
    assert N.lulc_scheme_from_tags({"datetime": "2023-06-10"}) is None


# --- what the codecs lose -------------------------------------------------------------------
def test_limit_counters(io):
    assert N.dem_floored_count(io["edge.DEM.input"]) == 4  # -32768, -100, -1, 0 (not NaN)
    ramp = io["post_ramp.DEM_DEM.input"]
    assert N.dem_saturated_count(io["post_ramp.DEM_DEM.post"]) == int((ramp >= 1).sum()) == 6
    s1 = N.s1_saturated_counts(io["post_ramp.S1RTC_vh_vv.post"].numpy())
    assert s1 == {"low": int((ramp <= -1).sum()), "high": 6}
    dn = N.from_model(ramp, "S2L2A_B02_B03_B04_B08")
    counts = N.s2_out_of_range_counts(N.reflectance_from_dn(dn, 0))
    assert counts == {"below_0": int((ramp < -1).sum()), "above_1": int((ramp > 1).sum())}
    with rasterio.open(terramind("DEM")) as src:
        assert N.dem_floored_count(src.read()) == 0  # the Tanzanian tile is at ~1200 m
