"""The diffusers backend, offline on the CPU.

Tiny random-weight LTX-Video and Wan pipelines are built here (the pattern of diffusers' own
``get_dummy_components``, with a tokenizer made locally instead of one from the hub), saved with
``save_pretrained`` to a temporary directory and loaded back by the renderer through the real
``from_pretrained`` path with ``HF_HUB_OFFLINE=1``. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actors.backends import get_backend
from actors.backends.diffusion import (
    DiffusersBackend,
    DiffusersRenderer,
    RenderError,
    model_ref,
    resolve_dtype,
)
from orchestrator.plan import RenderTask
from orchestrator.spec.manifest import Profile, RendererSpec

pytestmark = pytest.mark.diffusion

os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
PROFILE = Profile(width=64, height=64, fps=8)
WORDS = "night rain over a marble bank facade mara red coat studies the vault door walks away"


def _tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in sorted(set(WORDS.split()))]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz.,"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=16), len(pieces)


def _build_ltx(path: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer, vocab = _tokenizer()
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=vocab, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
            relative_attention_num_buckets=8,
        )
    )
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, num_layers=1, caption_channels=16,
    )
    torch.manual_seed(0)
    # the real compression (32x spatial with 4x4 patches and 3 downsamples, 8x temporal), so
    # the real frame and size rules hold; tiny channels
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), patch_size=4, patch_size_t=1,
    )
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == (32, 8)
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
        tokenizer=tokenizer, transformer=transformer,
    )
    pipe.save_pretrained(path)


def _build_wan(path: Path) -> None:
    """A Wan 2.2 TI2V-style model: one transformer for text- and image-to-video."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer, vocab = _tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
            relative_attention_num_buckets=8,
        )
    )
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16,
        out_channels=16, text_dim=16, freq_dim=32, ffn_dim=16, num_layers=1,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), expand_timesteps=True,
    )
    pipe.save_pretrained(path)


@pytest.fixture(scope="session")
def ltx_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-ltx"
    _build_ltx(path)
    return path


@pytest.fixture(scope="session")
def wan_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-wan"
    _build_wan(path)
    return path


def spec(model: Path | str | None, **kw) -> RendererSpec:
    base = dict(
        backend="diffusers", model=None if model is None else str(model), steps=2,
        guidance=5.0, negative_prompt="", gpus=0,
    )
    base.update(kw)
    return RendererSpec(**base)


def task(renderer: RendererSpec, *, frames: int = 9, seed: int = 7, prompt: str = "night rain",
         continuity: str = "cut", profile: Profile = PROFILE, tid: str = "shot") -> RenderTask:
    return RenderTask(
        id=tid, key="0" * 64, shot=tid, segment="seg", prompt=prompt,
        negative_prompt=renderer.negative_prompt or "", seed=seed, frames=frames,
        profile=profile, renderer=renderer, continuity=continuity,
        upstream="up" if continuity == "previous" else None,
    )


@pytest.fixture(scope="module")
def ltx_renderer():
    r = DiffusersRenderer()
    yield r
    r.close()


# -- rendering ------------------------------------------------------------------------------


def test_registry_returns_the_diffusers_backend():
    backend = get_backend("diffusers")
    assert isinstance(backend, DiffusersBackend)
    assert backend.name == "diffusers"


def test_text_to_video_renders_frames_of_the_profile_size(ltx_dir, ltx_renderer):
    frames = list(ltx_renderer.render(task(spec(ltx_dir), frames=17), None))
    assert len(frames) == 17
    for f in frames:
        assert f.shape == (64, 64, 3) and f.dtype == np.uint8
    assert ltx_renderer.loads == 1
    assert ltx_renderer.last_load_seconds() > 0
    assert ltx_renderer.loaded_models() == [f"{ltx_dir}@main/float32"]
    # a random-weight model still makes an image that varies across the frame
    assert np.ptp(np.stack(frames).astype(int)) > 0


def test_continuity_shot_uses_image_to_video_from_the_loaded_weights(ltx_dir, ltx_renderer):
    cut = task(spec(ltx_dir), frames=9)
    last = list(ltx_renderer.render(cut, None))[-1]
    loads = ltx_renderer.loads
    follow = task(spec(ltx_dir), frames=9, continuity="previous", prompt="mara red coat")
    frames = list(ltx_renderer.render(follow, last))
    assert len(frames) == 9 and frames[0].shape == (64, 64, 3)
    # no second from_pretrained: same model count, no load time, the weights are shared
    assert ltx_renderer.loads == loads
    assert ltx_renderer.last_load_seconds() == 0.0
    assert len(ltx_renderer.loaded_models()) == 1
    entry = ltx_renderer._loaded[ltx_renderer.loaded_models()[0]]
    t2v, i2v = entry.pipes["LTXPipeline"], entry.pipes["LTXImageToVideoPipeline"]
    assert type(i2v).__name__ == "LTXImageToVideoPipeline"
    assert i2v.transformer is t2v.transformer and i2v.vae is t2v.vae
    # the conditioning image matters: another start frame gives other frames
    other = list(ltx_renderer.render(follow, 255 - last))
    assert any(not np.array_equal(a, b) for a, b in zip(frames, other, strict=True))


def test_continuity_without_a_frame_is_an_error(ltx_dir, ltx_renderer):
    with pytest.raises(RenderError, match="no conditioning frame"):
        ltx_renderer.render(task(spec(ltx_dir), continuity="previous"), None)


def test_same_task_renders_identical_frames_in_a_fresh_renderer(ltx_dir, ltx_renderer):
    t = task(spec(ltx_dir), frames=9, seed=11)
    first = np.stack(list(ltx_renderer.render(t, None)))
    again = np.stack(list(ltx_renderer.render(t, None)))
    fresh = DiffusersRenderer()
    try:
        other_actor = np.stack(list(fresh.render(t, None)))
    finally:
        fresh.close()
    assert np.array_equal(first, again)
    assert np.array_equal(first, other_actor)


def test_another_seed_renders_other_frames(ltx_dir, ltx_renderer):
    a = np.stack(list(ltx_renderer.render(task(spec(ltx_dir), seed=1), None)))
    b = np.stack(list(ltx_renderer.render(task(spec(ltx_dir), seed=2), None)))
    assert a.shape == b.shape
    assert not np.array_equal(a, b)


def test_lru_evicts_the_least_recently_used_model(ltx_dir, wan_dir):
    r = DiffusersRenderer(max_models=1)
    try:
        list(r.render(task(spec(ltx_dir)), None))
        list(r.render(task(spec(wan_dir), frames=5), None))
        assert r.loaded_models() == [f"{wan_dir}@main/float32"]
        assert r.loads == 2
        list(r.render(task(spec(ltx_dir)), None))
        assert r.loads == 3 and r.last_load_seconds() > 0
    finally:
        r.close()
    assert r.loaded_models() == []


def test_wan_text_and_image_to_video(wan_dir):
    r = DiffusersRenderer(max_models=2)
    try:
        cut = list(r.render(task(spec(wan_dir), frames=5), None))
        assert len(cut) == 5 and cut[0].shape == (64, 64, 3)
        follow = task(spec(wan_dir), frames=9, continuity="previous", prompt="mara walks away")
        frames = list(r.render(follow, cut[-1]))
        assert len(frames) == 9 and frames[0].shape == (64, 64, 3)
        assert r.loads == 1 and r.last_load_seconds() == 0.0
        entry = r._loaded[r.loaded_models()[0]]
        assert entry.pipes["WanImageToVideoPipeline"].transformer is (
            entry.pipes["WanPipeline"].transformer
        )
    finally:
        r.close()


def test_image_only_family_refuses_a_cut_shot():
    backend = DiffusersBackend()
    t = task(spec("org/some-svd", pipeline="svd"), frames=14, profile=Profile(width=64, height=64))
    issues = backend.check_task(t)
    assert [i.field for i in issues] == ["continuity"]
    assert "image-to-video only" in issues[0].message
    with pytest.raises(RenderError, match="continuity: previous"):
        DiffusersRenderer().render(t, None)


def test_gpu_shot_renders_on_the_gpu_or_says_none_is_visible(ltx_dir):
    r = DiffusersRenderer()
    try:
        if _cuda_available():  # on a GPU machine the same shot renders there, in bfloat16
            frames = list(r.render(task(spec(ltx_dir, gpus=1)), None))
            assert len(frames) == 9 and r.loaded_models() == [f"{ltx_dir}@main/bfloat16"]
        else:
            with pytest.raises(RenderError, match="no CUDA GPU is visible"):
                r.render(task(spec(ltx_dir, gpus=1)), None)
            assert r.loads == 0
    finally:
        r.close()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# -- validate / plan time ---------------------------------------------------------------------


def _issues(renderer: RendererSpec, frames: int, profile: Profile = PROFILE) -> dict[str, str]:
    return {i.field: i.message for i in DiffusersBackend().check(renderer, frames, profile)}


def test_valid_shot_has_no_issues(ltx_dir, wan_dir):
    assert _issues(spec(ltx_dir), 9) == {}
    assert _issues(spec(wan_dir), 13) == {}
    assert _issues(spec("org/model", pipeline="ltx"), 121, Profile(width=768, height=512)) == {}


def test_ltx_frame_and_size_rules_name_the_nearest_valid_value():
    issues = _issues(spec("org/model", pipeline="ltx"), 72, Profile(width=640, height=360, fps=24))
    assert "8k+1" in issues["duration"]
    assert "nearest valid: 73 frames (duration: 3.04167)" in issues["duration"]
    assert "profile.width" not in issues  # 640 is a multiple of 32
    assert "multiples of 32" in issues["profile.height"]
    assert "nearest valid: 352" in issues["profile.height"]


def test_wan_and_svd_frame_rules():
    wan = _issues(spec("org/model", pipeline="wan"), 10, Profile(width=840, height=480, fps=16))
    assert "4k+1" in wan["duration"] and "nearest valid: 9 frames" in wan["duration"]
    assert "multiples of 16" in wan["profile.width"]
    assert "nearest valid: 848" in wan["profile.width"]
    assert "profile.height" not in wan
    svd = _issues(spec("org/model", pipeline="svd"), 48, Profile(width=1024, height=576, fps=8))
    assert "nearest valid: 25 frames (duration: 3.125)" in svd["duration"]
    assert "profile.width" not in svd and "profile.height" not in svd


def test_wan_size_rule_comes_from_the_model_configs(wan_dir):
    issues = _issues(spec(wan_dir), 9, Profile(width=80, height=64))
    assert "profile.width" not in issues  # tiny Wan: 8x VAE, 2x2 patches: multiples of 16


def test_family_is_read_from_model_index(ltx_dir, wan_dir):
    issues = _issues(spec(ltx_dir), 10)
    assert "ltx renders 8k+1" in issues["duration"] and "nearest valid: 9 frames" in issues[
        "duration"
    ]
    assert DiffusersBackend().key_params(task(spec(wan_dir), frames=5))["family"] == "wan"


def test_unknown_family_and_missing_model_are_errors(tmp_path):
    issues = _issues(spec("org/model", pipeline="cogvideo"), 9)
    assert "unknown diffusers pipeline family 'cogvideo'" in issues["renderer.pipeline"]
    for name in ("ltx", "wan", "svd"):
        assert name in issues["renderer.pipeline"]
    assert "renderer.model" in _issues(spec(None, pipeline="ltx"), 9)
    # a directory whose model_index names a pipeline no family renders
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    msg = _issues(spec(tmp_path), 9)["renderer.pipeline"]
    assert "FluxPipeline" in msg and "ltx" in msg
    # a hub id that is not cached locally: the family cannot be read at plan time
    msg = _issues(spec("nobody/not-cached-anywhere"), 9)["renderer.pipeline"]
    assert "set renderer.pipeline" in msg


def test_offload_on_a_cpu_shot_is_an_error():
    issues = _issues(spec("org/model", pipeline="ltx", offload="model"), 9)
    assert "renderer.offload" in issues


def test_key_params_change_with_what_changes_pixels_and_not_offload(ltx_dir):
    backend = DiffusersBackend()
    base = spec("org/model", pipeline="ltx", gpus=1)
    k0 = backend.key_params(task(base))
    assert k0["dtype"] == "bfloat16" and k0["family"] == "ltx" and k0["backend_version"] == "1"
    for change in (
        {"model": "org/other"},
        {"revision": "abc123"},
        {"dtype": "float16"},
        {"steps": 3},
        {"guidance": 4.0},
        {"vae_tiling": True},
        {"gpus": 0},  # a CPU render defaults to float32
    ):
        assert backend.key_params(task(base.model_copy(update=change))) != k0, change
    for same in ({"offload": "model"}, {"offload": "sequential"}, {"gpu_memory_gb": 40.0}):
        assert backend.key_params(task(base.model_copy(update=same))) == k0, same
    assert backend.key_params(task(base, continuity="previous"))["mode"] == "i2v"
    # the family read from the model is the family named explicitly
    auto = backend.key_params(task(spec(ltx_dir)))
    named = backend.key_params(task(spec(ltx_dir, pipeline="ltx")))
    assert auto == named


def test_resources_model_ref_and_estimate():
    backend = DiffusersBackend()
    gpu = spec("org/model", pipeline="ltx", gpus=None, resources={"H100": 1.0})
    res = backend.resources(gpu)
    assert res.num_gpus == 1.0 and res.custom == {"H100": 1.0}
    assert backend.resources(spec("org/model", pipeline="ltx", gpus=2)).num_gpus == 2.0
    assert backend.model_ref(gpu) == "org/model@main/bfloat16"
    assert model_ref(spec("org/m", revision="v2", dtype="float16")) == "org/m@v2/float16"
    assert resolve_dtype(spec("org/m")) == "float32"
    big = Profile(width=1280, height=720)
    assert backend.seconds_per_frame(gpu, big) > backend.seconds_per_frame(gpu, PROFILE) > 0


def test_control_plane_does_not_import_torch(ltx_dir):
    code = f"""
import sys
from actors.backends import get_backend
from orchestrator.spec.manifest import Profile, RendererSpec
b = get_backend("diffusers")
r = RendererSpec(backend="diffusers", model={str(ltx_dir)!r}, steps=2, guidance=5.0)
assert b.check(r, 9, Profile(width=64, height=64, fps=8)) == []
assert b.model_ref(r).endswith("/bfloat16")
b.seconds_per_frame(r, Profile())
b.resources(r)
heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print("HEAVY", heavy)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


# -- a whole story to masters -----------------------------------------------------------------


STORY = """\
apiVersion: reelfarm/v1
kind: Story
metadata: {{name: tiny-heist}}
spec:
  profile: {{width: 64, height: 64, fps: 8}}
  renderer:
    backend: diffusers
    model: {model}
    steps: 2
    guidance: 5.0
    gpus: 0
  seed: 7
  start: opening
  segments:
    - id: opening
      shots:
        - {{id: facade, prompt: "night rain over a marble bank facade", duration: 1.125}}
        - id: closeup
          prompt: "mara red coat studies the vault door"
          duration: 2.125
          continuity: previous
      choice:
        options:
          - {{label: Crack it, next: vault}}
          - {{label: Walk away, next: street}}
    - id: vault
      shots:
        - {{id: door, prompt: "the vault door", duration: 1.125, continuity: previous}}
    - id: street
      shots:
        - {{id: rain, prompt: "mara walks away", duration: 1.125}}
"""


def test_whole_story_renders_to_masters(ltx_dir, ray_cluster, tmp_path):
    from click.testing import CliRunner

    from actors.media import probe
    from orchestrator.cli import main

    manifest = tmp_path / "tiny-heist.yaml"
    manifest.write_text(STORY.format(model=json.dumps(str(ltx_dir))))
    store, out = tmp_path / "store", tmp_path / "out"
    r = CliRunner().invoke(main, ["validate", str(manifest)], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    r = CliRunner().invoke(
        main, ["render", str(manifest), "--store", str(store), "--out", str(out), "--plain"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.stderr
    branches = {b["name"]: b for b in json.loads((out / "branches.json").read_text())}
    assert set(branches) == {"vault", "street"}
    expected = {"vault": 9 + 17 + 9, "street": 9 + 17 + 9}
    for name, b in branches.items():
        info = probe(out / b["master"]["path"])
        assert b["master"]["frames"] == expected[name]
        assert info.frames == expected[name]
        assert (info.width, info.height) == (64, 64)
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["failed"] == 0, report["totals"]
    # facade, closeup (previous), door (previous), rain: four shots rendered once each
    assert report["totals"]["rendered"] == report["totals"]["unique"] == 4
    assert report["totals"]["naive"] == 6

    # rendered once: a second run finds every shot cached
    r = CliRunner().invoke(
        main, ["render", str(manifest), "--store", str(store), "--out", str(tmp_path / "again"),
               "--plain"], catch_exceptions=False,
    )
    assert r.exit_code == 0, r.stderr
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["totals"]["rendered"] == 0, again["totals"]


def test_validate_reports_the_frame_rule_with_its_line(ltx_dir, tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli import main

    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        STORY.format(model=json.dumps(str(ltx_dir))).replace("duration: 2.125", "duration: 2.0")
    )
    r = CliRunner().invoke(main, ["validate", str(manifest)], catch_exceptions=False)
    assert r.exit_code == 2
    assert "nearest valid: 17 frames (duration: 2.125)" in r.stderr
    assert "shots[1].duration" in r.stderr or "shots.1.duration" in r.stderr, r.stderr
