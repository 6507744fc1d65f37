#!/usr/bin/env python
"""Generate the COP-GEN mixed-precision (CPU bf16 autocast) parity fixtures.

This is our own code. It imports the official COP-GEN modules, unchanged, from a
checkout given with --official (commit 453f829234abd7f1cde8a6ad2b51968c37865204)
and runs them on the random weights and inputs of the fp32 parity fixtures
(--fp32-dir, default /work/shared/reference/copgen-parity).

    python make_fixtures.py --official /path/to/COP-GEN --out DIR            # items 1-2
    python make_fixtures.py --official ... --out DIR --base --base-dir D     # + base-size real chip

Only `torchvision` and the LMDB `datasets` module are stubbed (inference never
uses them). Autocast is "neutralised" for fp32 runs by replacing `torch.autocast`
with a factory that returns `torch.autocast(..., enabled=False)`; for the
autocast runs `torch.autocast` is left untouched, so the official
`with torch.autocast(device_type=self.device)` in `CopgenModel._sample_batch`
is active (CPU -> torch.bfloat16).
"""

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
import types
from collections import Counter, OrderedDict
from unittest import mock

os.environ["TZ"] = "UTC"
time.tzset()

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

torch.set_num_threads(2)

OFFICIAL_COMMIT = "453f829234abd7f1cde8a6ad2b51968c37865204"
BACKBONE_CASES = [
    "all_generated",
    "mixed_conditioned",
    "scalar_only_conditioned",
    "ignored_official",
]
S2L2A = ["S2L2A_B01_B09", "S2L2A_B02_B03_B04_B08", "S2L2A_B05_B06_B07_B11_B12_B8A"]
GEN_DEM_S1 = ["DEM_DEM", "S1RTC_vh_vv"]
TINY_VAES = {  # slot -> (file, ch, ch_mult), as in the fp32 fixtures (README B3)
    "S2L2A_B02_B03_B04_B08": ("vae_tiny_S2L2A_B02_B03_B04_B08.pth", 32, [1, 1, 1, 2]),
    "S1RTC_vh_vv": ("vae_tiny_S1RTC_vh_vv.pth", 32, [1, 1, 1, 1]),
    "DEM_DEM": ("vae_tiny_DEM_DEM.pth", 32, [1, 1, 1, 1]),
}
TIMINGS = {}  # wall-clock seconds; printed, never stored (keeps the files byte-reproducible)
BASE_VAE_SLOTS = [
    "S2L2A_B02_B03_B04_B08",
    "S2L2A_B05_B06_B07_B11_B12_B8A",
    "S2L2A_B01_B09",
    "DEM_DEM",
    "S1RTC_vh_vv",
]
# TerraMind S2L2A band order in the GeoTIFF (12 bands)
TM_S2L2A_BANDS = [
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B11",
    "B12",
]


# ----------------------------------------------------------------------------------------------
# official code import
# ----------------------------------------------------------------------------------------------
def import_official(path):
    path = os.path.abspath(path)
    tv = types.ModuleType("torchvision")
    tv.utils = types.ModuleType("torchvision.utils")
    tv.utils.save_image = lambda *a, **k: None
    tv.datasets = types.ModuleType("torchvision.datasets")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
    for name, mod in [
        ("torchvision", tv),
        ("torchvision.utils", tv.utils),
        ("torchvision.datasets", tv.datasets),
        ("torchvision.transforms", tv.transforms),
        ("torchvision.transforms.functional", tv.transforms.functional),
    ]:
        sys.modules[name] = mod
    ds = types.ModuleType("datasets")

    def get_dataset(*a, **k):
        raise RuntimeError("datasets is stubbed")

    ds.get_dataset = get_dataset
    sys.modules["datasets"] = ds
    sys.path.insert(0, path)
    import importlib.util

    import ddm.pre_post_process_data  # noqa: F401
    import libs.autoencoder
    import libs.copgen  # noqa: F401
    import libs.copgen_multi_post_ln as cmpl
    import utils  # noqa: F401

    spec = importlib.util.spec_from_file_location(
        "cop_gen_base", os.path.join(path, "configs/copgen/discrete/cop_gen_base.py")
    )
    cfg_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cfg_mod)
    return types.SimpleNamespace(
        path=path,
        utils=sys.modules["utils"],
        ae=sys.modules["libs.autoencoder"],
        copgen=sys.modules["libs.copgen"],
        cmpl=cmpl,
        ppd=sys.modules["ddm.pre_post_process_data"],
        get_config=cfg_mod.get_config,
    )


_REAL_AUTOCAST = torch.autocast


@contextlib.contextmanager
def autocast_neutralised():
    """Every torch.autocast(...) built inside becomes torch.autocast(..., enabled=False)."""

    def factory(*a, **k):
        k["enabled"] = False
        return _REAL_AUTOCAST(*a, **k)

    with mock.patch.object(torch, "autocast", factory):
        yield


def cpu_info():
    flags = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "amx_bf16": " amx_bf16" in flags,
        "avx512_bf16": " avx512_bf16" in flags,
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
        "note": "bf16 results are bit-exact only on the same oneDNN ISA (AMX-BF16 here); with ONEDNN_MAX_CPU_ISA=AVX512_CORE or AVX2 the autocast outputs differ by about as much as fp32 vs bf16 (see README)",
    }


def sha16(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]


def load_st(p):
    out = {}
    with safe_open(p, "pt") as f:
        for k in f:
            out[k] = f.get_tensor(k)
        md = json.loads(f.metadata()["json"])
    return out, md


def maxabs(a, b):
    return float((a.double() - b.double()).abs().max())


def save(tensors, meta, path):
    tensors = OrderedDict((k, v.detach().clone().contiguous()) for k, v in sorted(tensors.items()))
    save_file(tensors, path, metadata={"json": json.dumps(meta, sort_keys=True, indent=1)})


def tiny_config(official, fp32_dir):
    config = official.get_config()
    config.nnet.embed_dim = 64
    config.nnet.depth = 4
    config.nnet.num_heads = 2
    return config


# ----------------------------------------------------------------------------------------------
# dtype diagnostics
# ----------------------------------------------------------------------------------------------
class OpDtypeLog(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.c = Counter()

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = []
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor) and a.is_floating_point():
                ins.append(str(a.dtype).replace("torch.", ""))
            elif isinstance(a, (list, tuple)):
                ins += [
                    str(x.dtype).replace("torch.", "")
                    for x in a
                    if isinstance(x, torch.Tensor) and x.is_floating_point()
                ]
        outs = out if isinstance(out, (list, tuple)) else [out]
        od = [str(o.dtype).replace("torch.", "") for o in outs if isinstance(o, torch.Tensor)]
        name = str(func.overloadpacket.__name__)
        self.c[(name, ",".join(sorted(set(ins))), ",".join(sorted(set(od))[:1]))] += 1
        return out


def module_dtype_log(net, run):
    rec = Counter()
    hooks = []

    def mk(name, mod):
        def hook(m, inp, out):
            i = [str(x.dtype).replace("torch.", "") for x in inp if isinstance(x, torch.Tensor)]
            o = out if isinstance(out, torch.Tensor) else None
            rec[
                (
                    type(m).__name__ + ":" + name.split(".")[-1]
                    if type(m).__name__ in ("LayerNorm", "Linear")
                    else type(m).__name__,
                    ",".join(sorted(set(i))),
                    str(o.dtype).replace("torch.", "") if o is not None else "-",
                )
            ] += 1

        return hook

    for name, mod in net.named_modules():
        if name:
            hooks.append(mod.register_forward_hook(mk(name, mod)))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return rec


# ----------------------------------------------------------------------------------------------
# item 1: backbone under autocast
# ----------------------------------------------------------------------------------------------
def build_tiny_net(official, fp32_dir):
    config = tiny_config(official, fp32_dir)
    net = official.utils.get_nnet(**config.nnet)
    net.load_state_dict(
        torch.load(
            os.path.join(fp32_dir, "backbone_tiny.pth"), map_location="cpu", weights_only=True
        )
    )
    net.eval()
    slots = list(config.z_shapes.keys())
    return net, slots, config


def make_backbone(official, fp32_dir, out_dir):
    net, slots, _ = build_tiny_net(official, fp32_dir)
    io, md32 = load_st(os.path.join(fp32_dir, "backbone_tiny_io.safetensors"))
    assert md32["slot_order"] == slots
    tensors, per_case, dtypes = {}, {}, {}
    for s in slots:
        tensors[f"z.{s}"] = io[f"z.{s}"]
    for case in BACKBONE_CASES:
        src = f"{case}.in" if case == "ignored_official" else "z"
        inp = [io[f"{src}.{s}"] for s in slots]
        ts = [io[f"{case}.t.{s}"] for s in slots]
        for s in slots:
            tensors[f"{case}.t.{s}"] = io[f"{case}.t.{s}"]
            if case == "ignored_official":
                tensors[f"{case}.in.{s}"] = io[f"{case}.in.{s}"]
        with torch.no_grad():
            ref = net(inp, t_imgs=ts)
            bit = all(torch.equal(r, io[f"{case}.out.{s}"]) for r, s in zip(ref, slots, strict=False))
            assert bit, (
                f"fp32 replay of {case} is not bit-exact: setup differs from the fp32 fixtures"
            )
            with torch.autocast(device_type="cpu"):
                out = net(inp, t_imgs=ts)
        d = {}
        for o, s in zip(out, slots, strict=False):
            tensors[f"{case}.out.{s}"] = o  # stored exactly as returned
            dtypes[s] = str(o.dtype)
            d[s] = maxabs(o, io[f"{case}.out.{s}"])
        per_case[case] = {
            "fp32_replay_bit_exact": bit,
            "max_abs_diff_vs_fp32_per_slot": d,
            "max_abs_diff_vs_fp32": max(d.values()),
            "max_abs_fp32": max(float(io[f"{case}.out.{s}"].abs().max()) for s in slots),
        }
        per_case[case]["max_rel_diff_vs_fp32"] = (
            per_case[case]["max_abs_diff_vs_fp32"] / per_case[case]["max_abs_fp32"]
        )
    # dtype diagnostics (observation only; separate forward)
    inp = [io[f"z.{s}"] for s in slots]
    ts = [io[f"all_generated.t.{s}"] for s in slots]
    with torch.no_grad(), torch.autocast(device_type="cpu"):
        mrec = module_dtype_log(net, lambda: net(inp, t_imgs=ts))
        log = OpDtypeLog()
        with log:
            out2 = net(inp, t_imgs=ts)
    assert all(torch.equal(a, tensors[f"all_generated.out.{s}"]) for a, s in zip(out2, slots, strict=False))
    meta = {
        "official_commit": OFFICIAL_COMMIT,
        "attention_mode": official.cmpl.ATTENTION_MODE,
        "autocast": {
            "call": "with torch.no_grad(), torch.autocast(device_type='cpu'): out = nnet([in[s] for s in slots], t_imgs=[t[s] for s in slots])",
            "device_type": "cpu",
            "dtype": str(torch.get_autocast_dtype("cpu")),
        },
        "output_dtype_per_slot": dtypes,
        "inputs": "identical to backbone_tiny_io.safetensors (z.<slot>, <case>.t.<slot>, ignored_official.in.<slot>); copied here",
        "weights": "backbone_tiny.pth (fp32 fixture folder), loaded strict into utils.get_nnet(**config.nnet) with embed_dim 64, depth 4, num_heads 2",
        "fp32_source": {
            "file": "backbone_tiny_io.safetensors",
            "sha256_16": sha16(os.path.join(fp32_dir, "backbone_tiny_io.safetensors")),
        },
        "cases": per_case,
        "slot_order": slots,
        "batch": 2,
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "cpu": cpu_info(),
        "module_dtypes_under_autocast": sorted([[*list(k), v] for k, v in mrec.items()]),
        "aten_op_dtypes_under_autocast": sorted([[*list(k), v] for k, v in log.c.items()]),
    }
    p = os.path.join(out_dir, "backbone_tiny_autocast_io.safetensors")
    save(tensors, meta, p)
    return meta


# ----------------------------------------------------------------------------------------------
# item 2: sampler under autocast
# ----------------------------------------------------------------------------------------------
def build_vae_random(
    official, ddconfig, scale_factor, seed, perturb_seed, gn_scale=0.2, other_scale=0.01
):
    """Official FrozenAutoencoderKL built through its own __init__, file load bypassed, then perturbed."""
    ae_cls = official.ae.FrozenAutoencoderKL
    torch.manual_seed(seed)
    with (
        mock.patch.object(ae_cls, "load_state_dict", lambda self, sd, *a, **k: ([], [])),
        mock.patch.object(torch, "load", lambda *a, **k: None),
    ):
        ae = official.ae.get_model(
            pretrained_path="<none>", scale_factor=scale_factor, ddconfig=dict(ddconfig)
        )
    g = torch.Generator().manual_seed(perturb_seed)
    gn = {n for n, m in ae.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    with torch.no_grad():
        for n, p in ae.named_parameters():
            s = gn_scale if n.rsplit(".", 1)[0] in gn else other_scale
            p.add_(torch.randn(p.shape, generator=g) * s)
    return ae


def build_tiny_copgen(official, fp32_dir, tmp_dir):
    config = tiny_config(official, fp32_dir)
    os.makedirs(tmp_dir, exist_ok=True)
    for i, m in enumerate(config.autoencoders.keys()):
        a = config.autoencoders[m]
        if m in TINY_VAES:
            f, ch, mult = TINY_VAES[m]
            a.pretrained_path = os.path.join(fp32_dir, f)
        else:  # throw-away random tiny VAE; _sample_batch never uses it
            ch, mult = 32, [1, 1, 1, 1]
            dd = dict(a.ddconfig)
            dd.update(ch=ch, ch_mult=mult)
            ae = build_vae_random(official, dd, a.scale_factor, 500 + i, 600 + i)
            a.pretrained_path = os.path.join(tmp_dir, f"throwaway_{m}.pth")
            torch.save(ae.state_dict(), a.pretrained_path)
        a.ddconfig.ch = ch
        a.ddconfig.ch_mult = mult
    model = official.copgen.CopgenModel(
        os.path.join(fp32_dir, "backbone_tiny.pth"), config, device="cpu"
    )
    return model


def run_sample(model, z_cond_map, gen, cond, steps, seed, autocast):
    trace, out_dtypes = [], set()

    def pre(mod, args, kwargs):
        t_imgs = kwargs["t_imgs"]
        i = model.modality_names.index(sorted(gen)[0])
        trace.append(t_imgs[i].detach().clone())

    def post(mod, args, kwargs, out):
        out_dtypes.update(str(o.dtype) for o in out)

    h1 = model.nnet.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = model.nnet.register_forward_hook(post, with_kwargs=True)
    try:
        torch.manual_seed(seed)
        ctx = contextlib.nullcontext() if autocast else autocast_neutralised()
        t0 = time.time()
        with ctx, torch.no_grad():
            res = model._sample_batch(1, z_cond_map, set(gen), set(cond), steps)
        dt = time.time() - t0
    finally:
        h1.remove()
        h2.remove()
    return res, torch.stack(trace), sorted(out_dtypes), dt


def solver_dtype_probe(official, model, z_cond_map, gen, cond, steps, seed):
    """Observe (not alter) dtypes inside the official solver under the official autocast."""
    rec = {
        "model_fn_output(eps_hat)": set(),
        "data_prediction_x0": set(),
        "solver_state_x": set(),
        "final_x": set(),
    }
    DS = official.copgen.DPM_Solver
    orig_model_fn, orig_update, orig_sample = DS.model_fn, DS.dpm_solver_update, DS.sample

    def model_fn(self, x, t):
        x0 = orig_model_fn(self, x, t)
        rec["data_prediction_x0"].add(str(x0.dtype))
        return x0

    def update(self, x, *a, **k):
        rec["solver_state_x"].add(str(x.dtype))
        return orig_update(self, x, *a, **k)

    def sample(self, x, *a, **k):
        inner = self.model

        def m(x_, t_):
            e = inner(x_, t_)
            rec["model_fn_output(eps_hat)"].add(str(e.dtype))
            return e

        self.model = m
        out = orig_sample(self, x, *a, **k)
        rec["final_x"].add(str(out.dtype))
        return out

    with (
        mock.patch.object(DS, "model_fn", model_fn),
        mock.patch.object(DS, "dpm_solver_update", update),
        mock.patch.object(DS, "sample", sample),
    ):
        res, _, _, _ = run_sample(model, z_cond_map, gen, cond, steps, seed, autocast=True)
    return {k: sorted(v) for k, v in rec.items()}, res


def make_sampler(official, fp32_dir, out_dir, tmp_dir):
    model = build_tiny_copgen(official, fp32_dir, tmp_dir)
    io, md32 = load_st(os.path.join(fp32_dir, "sampler_tiny_io.safetensors"))
    slots = model.modality_names
    assert md32["slot_order"] == slots
    cond_map = {m: io[f"cond.{m}"] for m in S2L2A}
    tensors = {f"cond.{m}": io[f"cond.{m}"] for m in S2L2A}
    cases_meta = {}
    for case, cm in md32["cases"].items():
        gen, cond, seed = cm["generate"], cm["condition"], cm["torch_manual_seed"]
        zc = {m: cond_map[m] for m in cond}
        r32, tr32, dt32, s32 = run_sample(model, zc, gen, cond, 50, seed, autocast=False)
        bit = all(torch.equal(r32[m], io[f"{case}.final.{m}"]) for m in gen) and torch.equal(
            tr32, io[f"{case}.nnet_t_trace"]
        )
        assert bit, f"fp32 replay of {case} not bit-exact"
        # x_init replay
        torch.manual_seed(seed)
        xi = {m: torch.randn(1, *model.z_shapes[m]) for m in slots if m in gen}
        assert all(torch.equal(xi[m], io[f"{case}.x_init.{m}"]) for m in gen)
        rbf, trbf, dtbf, sbf = run_sample(model, zc, gen, cond, 50, seed, autocast=True)
        per = {}
        for m in gen:
            tensors[f"{case}.final.{m}"] = rbf[m]
            tensors[f"{case}.x_init.{m}"] = io[f"{case}.x_init.{m}"]
            a = maxabs(rbf[m], io[f"{case}.final.{m}"])
            mx = float(io[f"{case}.final.{m}"].abs().max())
            per[m] = {
                "max_abs": a,
                "max_abs_fp32": mx,
                "max_rel_to_max_fp32": a / mx,
                "final_dtype": str(rbf[m].dtype),
            }
        tensors[f"{case}.nnet_t_trace"] = trbf
        cases_meta[case] = dict(cm)
        cases_meta[case].update(
            {
                "fp32_replay_bit_exact": bit,
                "x_init_replay": True,
                "nnet_output_dtypes_autocast": dtbf,
                "nnet_output_dtypes_fp32": dt32,
                "nnet_t_trace_equal_to_fp32": bool(torch.equal(trbf, io[f"{case}.nnet_t_trace"])),
                "diff_vs_fp32": per,
                "max_abs": max(v["max_abs"] for v in per.values()),
                "max_rel_to_max_fp32": max(v["max_abs"] for v in per.values())
                / max(v["max_abs_fp32"] for v in per.values()),
            }
        )
        TIMINGS[f"sampler.{case}"] = {"fp32_s": round(s32, 2), "autocast_s": round(sbf, 2)}
        cases_meta[case].pop("seconds", None)
        cases_meta[case].pop("verified", None)
    # short 5-step case
    zc = {m: cond_map[m] for m in S2L2A}
    r32, tr32, _, _ = run_sample(model, zc, GEN_DEM_S1, S2L2A, 5, 101, autocast=False)
    rbf, trbf, _, _ = run_sample(model, zc, GEN_DEM_S1, S2L2A, 5, 101, autocast=True)
    torch.manual_seed(101)
    xi = [torch.randn(1, *model.z_shapes[m]) for m in GEN_DEM_S1]
    short = {}
    for m, x in zip(GEN_DEM_S1, xi, strict=False):
        tensors[f"short5.x_init.{m}"] = x
        tensors[f"short5.fp32.final.{m}"] = r32[m]
        tensors[f"short5.autocast.final.{m}"] = rbf[m]
        a = maxabs(rbf[m], r32[m])
        mx = float(r32[m].abs().max())
        short[m] = {"max_abs": a, "max_abs_fp32": mx, "max_rel_to_max_fp32": a / mx}
    for m in S2L2A:
        tensors[f"short5.cond.{m}"] = cond_map[m]
    tensors["short5.nnet_t_trace"] = trbf
    assert torch.equal(tr32, trbf)
    ns = model.noise_schedule
    probe, rprobe = solver_dtype_probe(official, model, cond_map, GEN_DEM_S1, S2L2A, 50, 101)
    assert all(
        torch.equal(rprobe[m], tensors[f"cond_S2L2A_gen_DEM_S1RTC.final.{m}"]) for m in GEN_DEM_S1
    )
    meta = {
        "official_commit": OFFICIAL_COMMIT,
        "batch": 1,
        "sample_steps": 50,
        "slot_order": slots,
        "autocast": {
            "how": "official `with torch.autocast(device_type=self.device)` in CopgenModel._sample_batch left active; device='cpu'",
            "dtype": str(torch.get_autocast_dtype("cpu")),
        },
        "fp32_reference": "autocast neutralised (torch.autocast -> enabled=False); replays sampler_tiny_io.safetensors bit for bit",
        "fp32_source": {
            "file": "sampler_tiny_io.safetensors",
            "sha256_16": sha16(os.path.join(fp32_dir, "sampler_tiny_io.safetensors")),
        },
        "construction": "CopgenModel(backbone_tiny.pth, cop_gen_base config with nnet 64/4/2, vae_tiny_{S2L2A_B02_B03_B04_B08,S1RTC_vh_vv,DEM_DEM}.pth, throw-away random ch32 VAEs for the other 7 image slots (unused by _sample_batch)), device='cpu'",
        "call": "torch.manual_seed(seed); model._sample_batch(1, {m: cond[m] for m in condition}, set(generate), set(condition), steps) under torch.no_grad()",
        "cases": cases_meta,
        "short5": {
            "generate": GEN_DEM_S1,
            "condition": S2L2A,
            "torch_manual_seed": 101,
            "sample_steps": 5,
            "n_model_calls": int(trbf.shape[0]),
            "orders": official.copgen.DPM_Solver(
                None, ns, predict_x0=True
            ).get_time_steps_for_dpm_solver_fast(
                skip_type="time_uniform", t_T=1.0, t_0=1e-3, steps=5, order=3, device="cpu"
            )[0],
            "diff_autocast_vs_fp32": short,
            "note": "x_init = torch.manual_seed(101) then randn per generated slot in slot order; the 7 ignored slots get fresh randn each call (same RNG stream in both runs)",
        },
        "solver_dtypes_under_autocast (observed, cond_S2L2A_gen_DEM_S1RTC)": probe,
        "cpu": cpu_info(),
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
    }
    p = os.path.join(out_dir, "sampler_tiny_autocast_io.safetensors")
    save(tensors, meta, p)
    return meta


# ----------------------------------------------------------------------------------------------
# item 3: base-size random weights, real chip
# ----------------------------------------------------------------------------------------------
def vae_folder_name(config, slot):
    return config.all_modality_configs[slot].autoencoder_path.split("/")[-2]


def make_base_weights(official, base_dir):
    config = official.get_config()
    os.makedirs(base_dir, exist_ok=True)
    p = os.path.join(base_dir, "500000_nnet_ema.pth")
    info = {}
    if not os.path.exists(p):
        torch.manual_seed(0)
        net = official.utils.get_nnet(**config.nnet)
        torch.save(net.state_dict(), p)
        del net
    info["backbone"] = {
        "path": p,
        "seed": 0,
        "init": "official COPGEN.__init__ (trunc_normal std .02, LN 1/0, pos_embed trunc_normal .02), no perturbation",
    }
    slots = list(config.z_shapes.keys())
    info["vaes"] = {}
    for slot in BASE_VAE_SLOTS:
        i = slots.index(slot)
        name = vae_folder_name(config, slot)
        vp = os.path.join(base_dir, "vaes", name, "model-50-ema.pth")
        seed, pseed = 7000 + i, 8000 + i
        if not os.path.exists(vp):
            a = config.autoencoders[slot]
            ae = build_vae_random(official, dict(a.ddconfig), a.scale_factor, seed, pseed)
            os.makedirs(os.path.dirname(vp), exist_ok=True)
            torch.save(ae.state_dict(), vp)
            del ae
        info["vaes"][slot] = {
            "path": vp,
            "init_seed": seed,
            "perturb_seed": pseed,
            "perturb": "p += N(0,1)*s, s=0.2 for GroupNorm weight/bias, 0.01 otherwise",
        }
    return info


def read_real_chip(official, config, tif):
    import rasterio

    with rasterio.open(tif) as d:
        arr = d.read()  # (12, 224, 224) int16 DN
    assert arr.shape == (12, 224, 224)
    win = torch.from_numpy(arr[:, 16:208, 16:208].astype(np.float32))  # 192 px centre window, 10 m
    out, raw = {}, {}
    for slot, pool in [
        ("S2L2A_B01_B09", 6),
        ("S2L2A_B02_B03_B04_B08", 1),
        ("S2L2A_B05_B06_B07_B11_B12_B8A", 2),
    ]:
        bands = list(config.all_modality_configs[slot].bands)
        x = win[[TM_S2L2A_BANDS.index(b) for b in bands]][None]
        if pool > 1:
            x = torch.nn.functional.avg_pool2d(x, pool)
        raw[slot] = x
        out[slot] = official.ppd.pre_process_data(x, slot, config.dataset)
    return raw, out


def make_base_run(official, base_dir, tif, steps, tmp_dir):
    config = official.get_config()
    list(config.z_shapes.keys())
    for j, slot in enumerate(config.autoencoders.keys()):
        a = config.autoencoders[slot]
        if slot in BASE_VAE_SLOTS:
            a.pretrained_path = os.path.join(
                base_dir, "vaes", vae_folder_name(config, slot), "model-50-ema.pth"
            )
        else:  # not used on this path (neither conditioned nor generated nor decoded); small stand-in
            dd = dict(a.ddconfig)
            dd.update(ch=32, ch_mult=[1, 1, 1, 1])
            ae = build_vae_random(official, dd, a.scale_factor, 900 + j, 950 + j)
            a.pretrained_path = os.path.join(tmp_dir, f"base_throwaway_{slot}.pth")
            torch.save(ae.state_dict(), a.pretrained_path)
            a.ddconfig.ch = 32
            a.ddconfig.ch_mult = [1, 1, 1, 1]
    model = official.copgen.CopgenModel(
        os.path.join(base_dir, "500000_nnet_ema.pth"), config, device="cpu"
    )
    raw, cond = read_real_chip(official, config, tif)
    results, timing = {}, {}
    for mode in ["fp32", "autocast"]:
        torch.manual_seed(101)
        ctx = autocast_neutralised() if mode == "fp32" else contextlib.nullcontext()
        t0 = time.time()
        with ctx:
            dec, lat = model.generate(
                list(GEN_DEM_S1),
                conditions={m: cond[m] for m in S2L2A},
                sample_steps=steps,
                return_latents=True,
            )
        timing[mode] = round(time.time() - t0, 1)
        phys = {
            m: official.ppd.post_process_data(dec[m].float(), m, config.dataset) for m in GEN_DEM_S1
        }
        results[mode] = {"latent": lat, "decoded": dec, "phys": phys}
        print(f"[base] {mode}: {timing[mode]} s", flush=True)
    r32, rbf = results["fp32"], results["autocast"]
    dem32, dembf = r32["phys"]["DEM_DEM"].double(), rbf["phys"]["DEM_DEM"].double()
    s1db32 = 10 * torch.log10(r32["phys"]["S1RTC_vh_vv"].double())
    s1dbbf = 10 * torch.log10(rbf["phys"]["S1RTC_vh_vv"].double())
    figs = {
        "steps": steps,
        "seed": 101,
        "seconds": timing,
        "DEM_m": {
            "max_abs": float((dem32 - dembf).abs().max()),
            "mean_abs": float((dem32 - dembf).abs().mean()),
            "fp32_range": [float(dem32.min()), float(dem32.max())],
        },
        "S1_dB": {
            "max_abs": float((s1db32 - s1dbbf).abs().max()),
            "mean_abs": float((s1db32 - s1dbbf).abs().mean()),
            "fp32_range": [float(s1db32.min()), float(s1db32.max())],
        },
        "latent": {
            m: {
                "max_abs": maxabs(r32["latent"][m], rbf["latent"][m]),
                "mean_abs": float(
                    (r32["latent"][m].double() - rbf["latent"][m].double()).abs().mean()
                ),
                "max_abs_fp32": float(r32["latent"][m].abs().max()),
                "dtype_autocast": str(rbf["latent"][m].dtype),
            }
            for m in GEN_DEM_S1
        },
        "decoded_model_space": {
            m: {"max_abs": maxabs(r32["decoded"][m], rbf["decoded"][m])} for m in GEN_DEM_S1
        },
        "S1_linear": {"max_abs": maxabs(r32["phys"]["S1RTC_vh_vv"], rbf["phys"]["S1RTC_vh_vv"])},
        "DEM_saturated_fraction_fp32": float(((dem32 >= 8847.0) | (dem32 <= 1e-5)).double().mean()),
        "S1_saturated_fraction_fp32": float(((s1db32 >= 40.2) | (s1db32 <= -55.7)).double().mean()),
    }
    tensors = {}
    for m in S2L2A:
        tensors[f"cond_raw_dn.{m}"] = raw[m]
        tensors[f"cond_pre.{m}"] = cond[m]
    for mode, r in results.items():
        for m in GEN_DEM_S1:
            tensors[f"{mode}.latent.{m}"] = r["latent"][m]
            tensors[f"{mode}.decoded.{m}"] = r["decoded"][m]
            tensors[f"{mode}.phys.{m}"] = r["phys"][m]
    meta = {
        "official_commit": OFFICIAL_COMMIT,
        "tile": tif,
        "figures": figs,
        "conditioning": "TerraMind S2L2A tile, window rows/cols 16..207 (192 px, 10 m); bands in config channel order; 20 m group avg_pool2d(2) -> 96 px, 60 m group avg_pool2d(6) -> 32 px, pooling on float32 DN; then pre_process_data(x, slot, config.dataset)",
        "call": "torch.manual_seed(101); model.generate(['DEM_DEM','S1RTC_vh_vv'], conditions={S2L2A_B01_B09, S2L2A_B02_B03_B04_B08, S2L2A_B05_B06_B07_B11_B12_B8A} (this dict order), sample_steps=steps, return_latents=True); post_process_data(decoded.float(), slot, config.dataset); S1 dB = 10*log10(linear) in float64",
        "weights": "random (see make_base_weights); NOT the published weights",
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "cpu": cpu_info(),
    }
    save(tensors, meta, os.path.join(base_dir, "official_real_chip.safetensors"))
    return figs


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--official",
        required=True,
        help="checkout of miquel-espinosa/COP-GEN at " + OFFICIAL_COMMIT,
    )
    ap.add_argument("--out", required=True, help="output folder for the fixtures")
    ap.add_argument("--fp32-dir", default="/work/shared/reference/copgen-parity")
    ap.add_argument(
        "--tmp-dir", default="/tmp/copgen_autocast_tmp", help="throw-away stand-in VAEs"
    )
    ap.add_argument(
        "--base",
        action="store_true",
        help="also item 3: base-size random weights and real-chip run",
    )
    ap.add_argument("--base-only", action="store_true")
    ap.add_argument("--base-dir", default="/work/fixgen/base_random")
    ap.add_argument("--base-steps", type=int, default=50)
    ap.add_argument("--tif", default="/work/shared/data/terramind/S2L2A/38D_378R_2_3.tif")
    args = ap.parse_args()
    official = import_official(args.official)
    os.makedirs(args.out, exist_ok=True)
    summary = {}
    if not args.base_only:
        summary["backbone"] = make_backbone(official, args.fp32_dir, args.out)["cases"]
        summary["sampler"] = {
            k: {kk: v[kk] for kk in ("max_abs", "max_rel_to_max_fp32", "fp32_replay_bit_exact")}
            for k, v in make_sampler(official, args.fp32_dir, args.out, args.tmp_dir)[
                "cases"
            ].items()
        }
    if args.base or args.base_only:
        summary["base_weights"] = make_base_weights(official, args.base_dir)
        summary["base_run"] = make_base_run(
            official, args.base_dir, args.tif, args.base_steps, args.tmp_dir
        )
    summary["timings_not_stored"] = TIMINGS
    print(json.dumps(summary, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
