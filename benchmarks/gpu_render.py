"""GPU benchmark of the diffusers backend: a full-size LTX-Video architecture, random weights.

Builds LTX-Video 2B (0.9 transformer and VAE configs, written out below) with random weights on
the GPU, saves it as a diffusers pipeline to a temporary directory, then renders a small story's
shots through :class:`actors.backends.diffusion.DiffusersRenderer` (the real ``from_pretrained``
path, ``cut`` shots by text-to-video, ``continuity: previous`` shots by image-to-video made with
``from_pipe``). Nothing is downloaded.

The text encoder is *not* full size: LTX-Video's T5-XXL encoder (4.7B parameters) is replaced by
a 2-layer T5 with the real width (d_model 4096, so the transformer's caption projection is the
real one). The output says so. Pixels are noise (random weights); timings are real.

Prints one JSON document: model load seconds, seconds per shot, frames per second, peak GPU
memory, and the speedup of a warm renderer (model loaded once) over loading per shot.

    python benchmarks/gpu_render.py                # on a CUDA machine; about 3-6 minutes on H100
    python benchmarks/gpu_render.py --smoke        # tiny configs, any device: checks the script

Not run in CI. Exits 2 at once, with a message, where no CUDA GPU is present (unless --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# LTX-Video 2B v0.9 (Lightricks/LTX-Video, transformer/config.json and vae/config.json)
LTX_TRANSFORMER = dict(
    in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
    attention_head_dim=64, cross_attention_dim=2048, num_layers=28,
    activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads",
    norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, attention_bias=True,
    attention_out_bias=True,
)
LTX_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=128, block_out_channels=(128, 256, 512, 512),
    decoder_block_out_channels=(128, 256, 512, 512), layers_per_block=(4, 3, 3, 3, 4),
    decoder_layers_per_block=(4, 3, 3, 3, 4),
    spatio_temporal_scaling=(True, True, True, False),
    decoder_spatio_temporal_scaling=(True, True, True, False),
    decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False,) * 4,
    upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=4, patch_size_t=1,
    resnet_norm_eps=1e-6, scaling_factor=1.0, encoder_causal=True, decoder_causal=False,
)
# T5 v1.1 XXL's width with 2 of its 24 layers
T5_SMALL = dict(
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_heads=64,
    feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
)

TINY_TRANSFORMER = dict(
    in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
    attention_head_dim=8, cross_attention_dim=16, num_layers=1, caption_channels=16,
)
TINY_VAE = dict(
    latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1), patch_size=4,
)
TINY_T5 = dict(vocab_size=64, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
               relative_attention_num_buckets=8)

SHOTS = [  # (id, prompt, continuity)
    ("facade", "Night. Rain over a marble bank facade, neon reflections", "cut"),
    ("closeup", "Mara, red coat, studies the vault door", "previous"),
    ("vault", "The vault door swings open, gold light spills out", "previous"),
    ("street", "A wet street at dawn, a taxi drives away", "cut"),
]


def fail(msg: str) -> None:
    print(json.dumps({"error": msg}), flush=True)
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def tokenizer():
    from transformers import T5Tokenizer

    words = sorted({w.strip(".,").lower() for _, p, _ in SHOTS for w in p.split()})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in words]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz.,"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=128)


def build_model(path: Path, device: str, smoke: bool) -> dict:
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    t0 = time.perf_counter()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # random init on the GPU: seconds, not minutes
            transformer = LTXVideoTransformer3DModel(**(TINY_TRANSFORMER if smoke else
                                                        LTX_TRANSFORMER))
            vae = AutoencoderKLLTXVideo(**(TINY_VAE if smoke else LTX_VAE))
            text_encoder = T5EncoderModel(T5Config(**(TINY_T5 if smoke else T5_SMALL)))
    finally:
        torch.set_default_dtype(previous)
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=1024, base_shift=0.95, max_image_seq_len=4096, max_shift=2.05,
        shift_terminal=0.1, use_dynamic_shifting=True,
    )
    pipe = LTXPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                       tokenizer=tokenizer(), transformer=transformer)
    params = {name: sum(p.numel() for p in m.parameters())
              for name, m in (("transformer", transformer), ("vae", vae),
                              ("text_encoder", text_encoder))}
    pipe.save_pretrained(path)
    del pipe, transformer, vae, text_encoder
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"build_seconds": round(time.perf_counter() - t0, 2), "parameters": params}


def plan_tasks(model: Path, args):
    from orchestrator.plan.expand import expand
    from orchestrator.spec.loading import load_manifest

    fps = args.fps
    duration = args.frames / fps
    shots = []
    for sid, prompt, continuity in SHOTS[: args.shots]:
        shots.append({"id": sid, "prompt": prompt, "duration": duration,
                      "continuity": continuity})
    doc = {
        "apiVersion": "reelfarm/v1",
        "kind": "Story",
        "metadata": {"name": "gpu-bench"},
        "spec": {
            "profile": {"width": args.width, "height": args.height, "fps": fps},
            "renderer": {"backend": "diffusers", "model": str(model), "steps": args.steps,
                         "guidance": 3.0, "gpus": 0 if args.smoke_cpu else 1},
            "seed": 7,
            "start": "only",
            "segments": [{"id": "only", "shots": shots}],
        },
    }
    manifest = load_manifest("gpu-bench.json", json.dumps(doc).encode())
    return expand(manifest.story).tasks


def render_story(renderer, tasks) -> list[dict]:
    last: dict[str, object] = {}
    out = []
    for t in tasks:
        t0 = time.perf_counter()
        frames = list(renderer.render(t, last.get(t.upstream) if t.upstream else None))
        wall = time.perf_counter() - t0
        last[t.id] = frames[-1]
        out.append({"shot": t.shot, "continuity": t.continuity, "frames": len(frames),
                    "load_seconds": round(renderer.last_load_seconds(), 3),
                    "render_seconds": round(wall - renderer.last_load_seconds(), 3),
                    "wall_seconds": round(wall, 3)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--fps", type=int, default=24)
    ap.add_argument("--frames", type=int, default=65, help="per shot: 8k+1")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--shots", type=int, default=len(SHOTS))
    ap.add_argument("--cold-shots", type=int, default=2,
                    help="shots rendered by a fresh renderer each (load per shot)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny configs, CPU allowed: checks the script, measures nothing useful")
    args = ap.parse_args()

    try:
        import diffusers
        import torch
    except ImportError as e:
        fail(f"the diffusers backend is not installed ({e}): pip install 'reelfarm[diffusion]'")
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        fail("no CUDA GPU is visible (torch.cuda.is_available() is False); this benchmark needs "
             "one. Use --smoke to check the script on the CPU.")
    device = "cuda" if cuda else "cpu"
    args.smoke_cpu = not cuda
    if args.smoke:
        args.width, args.height, args.frames, args.steps = 64, 64, 9, 2

    from actors.backends.diffusion import DiffusersRenderer

    tmp = Path(tempfile.mkdtemp(prefix="reelfarm-bench-"))
    try:
        model = tmp / "ltx-video-2b-random"
        built = build_model(model, device, args.smoke)
        tasks = plan_tasks(model, args)

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        # warm: one renderer, the model loaded once, every shot of the story
        warm = DiffusersRenderer()
        t0 = time.perf_counter()
        warm_shots = render_story(warm, tasks)
        warm_total = time.perf_counter() - t0
        load_seconds = warm_shots[0]["load_seconds"]
        assert warm.loads == 1, warm.loads
        warm.close()
        peak = torch.cuda.max_memory_allocated() / 1024**3 if cuda else 0.0

        # cold: a fresh renderer per shot, as a task per shot without a warm actor would run
        cold = []
        for t in [t for t in tasks if t.upstream is None][: args.cold_shots]:
            r = DiffusersRenderer()
            t1 = time.perf_counter()
            frames = list(r.render(t, None))
            cold.append({"shot": t.shot, "frames": len(frames),
                         "load_seconds": round(r.last_load_seconds(), 3),
                         "wall_seconds": round(time.perf_counter() - t1, 3)})
            r.close()

        renders = [s["render_seconds"] for s in warm_shots]
        frames_total = sum(s["frames"] for s in warm_shots)
        warm_per_shot = sum(renders) / len(renders)
        cold_per_shot = sum(c["wall_seconds"] for c in cold) / max(1, len(cold))
        n = len(warm_shots)
        result = {
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "smoke": args.smoke,
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
            "model": {
                "architecture": "LTX-Video 2B v0.9 transformer + VAE at full size"
                if not args.smoke else "tiny LTX-Video (smoke run)",
                "weights": "random",
                "text_encoder": "T5 at T5-XXL width (d_model 4096) with 2 of 24 layers; "
                "the real 4.7B encoder is not built"
                if not args.smoke else "tiny T5",
                "dtype": "bfloat16" if cuda else "float32",
                **built,
            },
            "story": {"shots": n, "frames_per_shot": args.frames, "width": args.width,
                      "height": args.height, "fps": args.fps, "steps": args.steps,
                      "guidance": 3.0},
            "load_seconds": load_seconds,
            "seconds_per_shot": round(warm_per_shot, 3),
            "frames_per_second": round(frames_total / sum(renders), 3),
            "peak_gpu_memory_gb": round(peak, 2),
            "warm_story_seconds": round(warm_total, 3),
            "cold_seconds_per_shot": round(cold_per_shot, 3),
            "speedup_warm_vs_load_per_shot": round(cold_per_shot / warm_per_shot, 3),
            "story_speedup_warm_vs_load_per_shot": round(cold_per_shot * n / warm_total, 3),
            "shots": warm_shots,
            "cold_shots": cold,
            "notes": "cold loads read the weights from the page cache after the first load, so "
            "the cold numbers are a lower bound on what loading per shot costs",
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
