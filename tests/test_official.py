"""convert-official against a reference forward of the official layout, written here from DESIGN.md."""

import math

import pytest
import torch
import torch.nn.functional as F

from cmadapter import CheckpointError, build_model
from cmadapter.checkpoint import save_adapter_checkpoint
from cmadapter.official import convert_official
from helpers import TINY, random_video, tiny_state_dict

R, DS = 4, 8


def official_checkpoint(shared_dim=DS, seed=0):
    torch.manual_seed(seed)
    state = {"clip." + k: v for k, v in tiny_state_dict().items()}
    rows, dv, dt = 2 * TINY.vision_layers, TINY.vision_width, TINY.text_width

    def rand(*shape):
        return torch.randn(*shape) * 0.05

    state |= {
        "clip.visual_adapter_down_weight": rand(rows, R, dv),
        "clip.visual_adapter_down_bias": rand(rows, R),
        "clip.visual_adapter_up_unique_weight": rand(rows, dv - shared_dim, R),
        "clip.visual_adapter_up_unique_bias": rand(rows, dv - shared_dim),
        "clip.text_adapter_down_weight": rand(rows, R, dt),
        "clip.text_adapter_down_bias": rand(rows, R),
        "clip.text_adapter_up_unique_weight": rand(rows, dt - shared_dim, R),
        "clip.text_adapter_up_unique_bias": rand(rows, dt - shared_dim),
        "loss_fct.dummy": torch.zeros(1),  # something outside CLIP, as official files may hold
    }
    if shared_dim:
        state["clip.vt_adapter_up_share_weight"] = rand(rows, shared_dim, R)
        state["clip.vt_adapter_up_share_bias"] = rand(rows, shared_dim)
    return state


# ---- reference forward: plain tensor code from the OpenAI layout, independent of cmadapter ----------


def layer_norm(x, sd, key):
    return F.layer_norm(x, x.shape[-1:], sd[key + ".weight"], sd[key + ".bias"], 1e-5)


def attention(x, sd, key, heads, causal):
    n, length, width = x.shape
    qkv = x @ sd[key + ".in_proj_weight"].T + sd[key + ".in_proj_bias"]
    q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if causal:
        scores = scores.masked_fill(torch.ones(length, length).triu(1).bool(), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, width)
    return out @ sd[key + ".out_proj.weight"].T + sd[key + ".out_proj.bias"]


def adapter(h, sd, tower, row, shared_dim):
    down = h @ sd[f"clip.{tower}_adapter_down_weight"][row].T + sd[f"clip.{tower}_adapter_down_bias"][row]
    a = down * torch.sigmoid(1.702 * down)
    up_w = [sd[f"clip.{tower}_adapter_up_unique_weight"][row]]
    up_b = [sd[f"clip.{tower}_adapter_up_unique_bias"][row]]
    if shared_dim:
        up_w.append(sd["clip.vt_adapter_up_share_weight"][row])
        up_b.append(sd["clip.vt_adapter_up_share_bias"][row])
    return h + a @ torch.cat(up_w).T + torch.cat(up_b)


def blocks(x, sd, prefix, tower, layers, heads, causal, shared_dim):
    for i in range(layers):
        key = f"clip.{prefix}resblocks.{i}"
        x = x + adapter(
            attention(layer_norm(x, sd, key + ".ln_1"), sd, key + ".attn", heads, causal), sd, tower, 2 * i, shared_dim
        )
        hidden = layer_norm(x, sd, key + ".ln_2") @ sd[key + ".mlp.c_fc.weight"].T + sd[key + ".mlp.c_fc.bias"]
        hidden = hidden * torch.sigmoid(1.702 * hidden)
        hidden = hidden @ sd[key + ".mlp.c_proj.weight"].T + sd[key + ".mlp.c_proj.bias"]
        x = x + adapter(hidden, sd, tower, 2 * i + 1, shared_dim)
    return x


def reference_image(images, sd, shared_dim):
    x = F.conv2d(images, sd["clip.visual.conv1.weight"], stride=TINY.patch_size).flatten(2).transpose(1, 2)
    cls = sd["clip.visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["clip.visual.positional_embedding"]
    x = layer_norm(x, sd, "clip.visual.ln_pre")
    x = blocks(x, sd, "visual.transformer.", "visual", TINY.vision_layers, TINY.vision_heads, False, shared_dim)
    return layer_norm(x[:, 0], sd, "clip.visual.ln_post") @ sd["clip.visual.proj"]


def reference_text(tokens, sd, shared_dim):
    length = tokens.shape[1]
    x = sd["clip.token_embedding.weight"][tokens] + sd["clip.positional_embedding"][:length]
    x = blocks(x, sd, "transformer.", "text", TINY.text_layers, TINY.text_heads, True, shared_dim)
    x = layer_norm(x, sd, "clip.ln_final")
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ sd["clip.text_projection"]


def reference_logits(tokens, frames, sd, shared_dim):
    text = reference_text(tokens, sd, shared_dim)
    video = reference_image(frames.flatten(0, 1), sd, shared_dim).view(*frames.shape[:2], -1)
    logits = torch.empty(text.shape[0], video.shape[0])
    for n in range(text.shape[0]):
        for m in range(video.shape[0]):
            w = torch.softmax(video[m] @ text[n] / 5.0, dim=0)
            logits[n, m] = sd["clip.logit_scale"].exp() * F.cosine_similarity(text[n], w @ video[m], dim=0)
    return logits


@pytest.mark.parametrize("shared_dim", [DS, 0])
def test_converted_checkpoint_reproduces_the_official_forward(tmp_path, shared_dim):
    state = official_checkpoint(shared_dim)
    official = tmp_path / "pytorch_model.bin.4"
    torch.save(state, official)
    converted = convert_official(official)
    assert converted.options == {"r": R, "shared_dim": shared_dim}
    adapter = save_adapter_checkpoint(converted, tmp_path / "converted.safetensors")

    # The CLIP weights inside the official file build the backbone.
    model = build_model(pretrained=official, adapter=adapter)
    tokens = model.tokenize(["a red square moves left", "a blue circle appears", "nothing"])
    frames = random_video(2, 3)
    with torch.no_grad():
        got = model(tokens, frames, None)
        expected = reference_logits(tokens, frames, state, shared_dim)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_conversion_refuses_other_files(tmp_path):
    torch.save(tiny_state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of the official"):
        convert_official(tmp_path / "plain.pt")
    state = official_checkpoint()
    state["clip.visual_adapter_up_unique_weight"] = state["clip.visual_adapter_up_unique_weight"][:, :-1]
    torch.save(state, tmp_path / "bad.bin")
    with pytest.raises(CheckpointError, match="visual_adapter_up_unique has shape"):
        convert_official(tmp_path / "bad.bin")


def test_adapter_only_file_needs_a_backbone_name(tmp_path):
    state = {k: v for k, v in official_checkpoint().items() if "adapter" in k}
    torch.save(state, tmp_path / "adapters.bin")
    with pytest.raises(CheckpointError, match="name the backbone"):
        convert_official(tmp_path / "adapters.bin")
    with pytest.raises(CheckpointError, match="has shape"):  # tiny adapters do not fit ViT-B/32
        convert_official(tmp_path / "adapters.bin", backbone_name="ViT-B-32-quickgelu")
