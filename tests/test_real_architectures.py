"""The attention processors on attention layers of the real Stable Diffusion 1.5 sizes.

The tiny models have head dimensions of 4 to 8; SD 1.5 has 8 heads of 40, 80 and 160 dimensions
(block widths 320, 640, 1280) and a 768-wide prompt (tests/data/configs/sd15_unet.json). Here the
decoder layers that plug-and-play injection names (``up_blocks.{1,2,3}``) are built with those
widths, under the UNet's own layer names, and each processor is installed the way the methods
install it (`cross_frame_attention`, `anchor_attention_processors`, `layout_attention`,
`plug_and_play`); its output is compared with diffusers' default processor on the equivalent
dense problem, or with the paper's formula written out on the layer's own projections. Token grids
are smaller than at 512 px (16x16 latent instead of 64x64) to keep the test fast; the widths, heads,
head dimensions and prompt width are the real ones.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from videdit.attention.anchor import AnchorState, anchor_attention_processors
from videdit.attention.frames import cross_frame_attention
from videdit.attention.injection import plug_and_play
from videdit.attention.layout import LayoutState, layout_attention

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = json.loads((Path(__file__).parent / "data" / "configs" / "sd15_unet.json").read_text())
LATENT = (16, 16)  # latent size of the test; the real 512 px latent is 64x64
F = 2              # frames
B = 2              # guidance branches (unconditional, conditional)
PROMPT = 77        # CLIP prompt length


class Layers(torch.nn.Module, AttentionMixin):
    """``up_blocks.{1,2,3}.attentions.*.transformer_blocks.0.attn{1,2}`` of SD 1.5, attention modules only.

    ``forward(inputs, timestep)`` runs each self-attention layer on ``inputs[name]`` (the UNet call
    that injection reads the timestep from)."""

    def __init__(self):
        super().__init__()
        widths = CONFIG["block_out_channels"][::-1]  # up blocks run from the widest level down
        heads = CONFIG["attention_head_dim"]  # SD 1.5's config names the head count so
        counts = {1: 2, 2: 1, 3: 1}  # enough of each level to hold the layers injection names
        self.up_blocks = torch.nn.ModuleList([torch.nn.Module() for _ in range(len(widths))])
        for b, n in counts.items():
            dim = widths[b]
            self.up_blocks[b].attentions = torch.nn.ModuleList()
            for _ in range(n):
                t = torch.nn.Module()
                block = torch.nn.Module()
                block.attn1 = Attention(dim, heads=heads, dim_head=dim // heads, out_bias=True)
                block.attn2 = Attention(dim, cross_attention_dim=CONFIG["cross_attention_dim"], heads=heads,
                                        dim_head=dim // heads, out_bias=True)
                t.transformer_blocks = torch.nn.ModuleList([block])
                self.up_blocks[b].attentions.append(t)
        self.levels = {b: 2 ** (len(widths) - 1 - b) for b in counts}  # up_blocks.1 at 1/4 of the latent, ...

    def layers(self):
        """(name, level factor, attn1, attn2) of every transformer block."""
        for b, factor in self.levels.items():
            for i, t in enumerate(self.up_blocks[b].attentions):
                blk = t.transformer_blocks[0]
                yield f"up_blocks.{b}.attentions.{i}", factor, blk.attn1, blk.attn2

    def forward(self, inputs, timestep):
        return {name: attn1(inputs[name]) for name, _, attn1, _ in self.layers()}


@pytest.fixture(scope="module")
def layers():
    torch.manual_seed(0)
    model = Layers().eval().requires_grad_(False)
    dims = sorted({a1.inner_dim // a1.heads for _, _, a1, _ in model.layers()})
    assert dims == [40, 80, 160] and all(a2.to_k.in_features == 768 for _, _, _, a2 in model.layers())
    return model


def tokens(factor):
    return (LATENT[0] // factor) * (LATENT[1] // factor)


def hidden(layer, batch, factor, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens(factor), layer.query_dim, generator=g)


def default(attn, x, context=None):
    """diffusers' default processor on ``x`` (and the prompt or other keys ``context``)."""
    assert isinstance(attn.processor, AttnProcessor2_0)
    return attn(x, encoder_hidden_states=context)


def split(attn, x):
    """(batch, tokens, heads*d) -> (batch, heads, tokens, d)."""
    return x.unflatten(-1, (attn.heads, -1)).transpose(1, 2)


def finish(attn, out):
    """(batch, heads, tokens, d) -> the layer's output projection."""
    return attn.to_out[0](out.transpose(1, 2).flatten(-2))


def assert_close(a, b):
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["full", "sparse"])
def test_cross_frame_attention_at_real_widths(layers, mode):
    """Frame f attends to all frames (full) or to frames {0, f-1} (sparse): the same as diffusers'
    default processor with those frames' tokens as the keys."""
    checked = 0
    for name, factor, attn1, _ in layers.layers():
        x = hidden(attn1, B * F, factor, seed=checked)
        with cross_frame_attention(layers, F, mode):
            out = attn1(x)
        xb = x.unflatten(0, (B, F))
        for f in range(F):
            keys = range(F) if mode == "full" else sorted({0, max(f - 1, 0)})
            context = torch.cat([xb[:, g] for g in keys], dim=1)
            assert_close(out.unflatten(0, (B, F))[:, f], default(attn1, xb[:, f], context))
        checked += 1
    assert checked == 4


def test_anchor_attention_at_real_widths(layers):
    """Anchors attend among themselves; every other frame to itself and the anchors, whose keys and
    values come from the anchors' own pass (the cache), in every guidance branch."""
    anchors, others = [0, 3], [1, 2]
    for n, (name, factor, attn1, _) in enumerate(layers.layers()):
        x_anc = hidden(attn1, B * len(anchors), factor, seed=10 + n)
        x_oth = hidden(attn1, B * len(others), factor, seed=20 + n)
        state = AnchorState(anchors=anchors)
        with anchor_attention_processors(layers, state):
            state.set(anchors, step=0, record=True)
            out_anc = attn1(x_anc)
            state.set(others, step=0, record=False)
            out_oth = attn1(x_oth)
        anc = x_anc.unflatten(0, (B, len(anchors)))
        oth = x_oth.unflatten(0, (B, len(others)))
        every_anchor = anc.flatten(1, 2)
        for i in range(len(anchors)):
            assert_close(out_anc.unflatten(0, (B, len(anchors)))[:, i], default(attn1, anc[:, i], every_anchor))
        for i in range(len(others)):
            context = torch.cat([oth[:, i], every_anchor], dim=1)
            assert_close(out_oth.unflatten(0, (B, len(others)))[:, i], default(attn1, oth[:, i], context))


def modulated(q, k, v, same, sigma, weight, scale):
    """VideoGrain section 3.3 written out: S' = S + w sigma [M (S_max - S) - (1 - M)(S - S_min)], softmax(S') V."""
    s = q @ k.transpose(-1, -2) * scale
    s_max, s_min = s.amax(-1, keepdim=True), s.amin(-1, keepdim=True)
    s = s + weight * sigma[..., None] * torch.where(same, s_max - s, -(s - s_min))
    return s.softmax(-1) @ v


def test_layout_attention_at_real_widths(layers):
    """ST-Layout attention at timestep 801 with two regions (left and right half): at the levels it
    modulates (1/2 and 1/4 of the latent: head dims 80 and 160) the conditional branch follows the
    formula on the layer's own q, k, v; the unconditional branch, and the full-resolution level
    (head dim 40), are plain cross-frame attention and plain cross-attention."""
    t = 801.0
    xi = ((t - 1) / 1000) ** 5
    left = torch.zeros(F, *LATENT, dtype=torch.bool)
    left[..., : LATENT[1] // 2] = True
    token_ids = torch.full((PROMPT,), -1)
    token_ids[1:3], token_ids[4:6] = 0, 1  # the spans of the two regions' prompts
    state = LayoutState(num_frames=F, latent_size=LATENT, masks=[left.numpy(), (~left).numpy()], token_ids=token_ids,
                        timestep=t)
    g = torch.Generator().manual_seed(5)
    prompt = torch.randn(B * F, PROMPT, CONFIG["cross_attention_dim"], generator=g)
    modulated_levels = set()
    for n, (name, factor, attn1, attn2) in enumerate(layers.layers()):
        x = hidden(attn1, B * F, factor, seed=30 + n)
        with layout_attention(layers, state):
            out_self, out_cross = attn1(x), attn2(x, encoder_hidden_states=prompt)
        h, w = LATENT[0] // factor, LATENT[1] // factor
        ids = (torch.arange(w) >= w // 2).long().repeat(F, h)  # (F, h*w): 0 left, 1 right
        xb = x.unflatten(0, (B, F))
        plain_self = torch.stack([default(attn1, xb[:, f], xb.flatten(1, 2)) for f in range(F)], 1).flatten(0, 1)
        plain_cross = default(attn2, x, prompt)
        if factor not in state.factors:
            assert_close(out_self, plain_self)
            assert_close(out_cross, plain_cross)
            continue
        modulated_levels.add(factor)
        cond = slice(F, 2 * F)
        # self-attention: queries and keys are all (frame, position) pairs of the clip
        q, k, v = (split(attn1, p(x[cond]).flatten(0, 1)[None]) for p in (attn1.to_q, attn1.to_k, attn1.to_v))
        flat = ids.flatten()
        same = flat[:, None] == flat[None, :]
        sigma = 1 - (flat[:, None] == flat[None, :]).float().sum(-1) / flat.numel()
        ref = finish(attn1, modulated(q, k, v, same, sigma, 0.3 * xi, attn1.scale)).reshape(F, h * w, -1)
        assert_close(out_self[cond], ref)
        assert_close(out_self[:F], plain_self[:F])
        # cross-attention: pixels of region i to the tokens of span i
        q = split(attn2, attn2.to_q(x[cond]))
        k, v = (split(attn2, p(prompt[cond])) for p in (attn2.to_k, attn2.to_v))
        same = (ids[:, :, None] == token_ids[None, None, :])[:, None]
        sigma = (1 - (ids[:, :, None] == ids[:, None, :]).float().sum(-1) / (h * w))[:, None]
        ref = finish(attn2, modulated(q, k, v, same, sigma, 1.0 * xi, attn2.scale))
        assert_close(out_cross[cond], ref)
        assert_close(out_cross[:F], plain_cross[:F])
    assert modulated_levels == {2, 4}


def test_plug_and_play_injection_at_real_widths(layers):
    """The source pass (F frames) records each injected layer's self-attention queries and keys; the
    edit pass (a guided batch of B*F) uses them with its own values, in every branch."""
    t = 901
    state, injection = plug_and_play(layers, [t], 1)
    src = {name: hidden(a1, F, f, seed=40 + n) for n, (name, f, a1, _) in enumerate(layers.layers())}
    edit = {name: hidden(a1, B * F, f, seed=50 + n) for n, (name, f, a1, _) in enumerate(layers.layers())}
    with injection as used:
        state.mode = "record"
        layers(src, torch.tensor([t]))
        state.mode = "inject"
        out = layers(edit, torch.tensor([t]))
    injected = {name.split(".transformer_blocks")[0] for name in used["attentions"]}
    assert injected == {"up_blocks.1.attentions.1", "up_blocks.2.attentions.0", "up_blocks.3.attentions.0"}
    for name, _, attn1, _ in layers.layers():
        if name not in injected:  # a layer that plug-and-play does not name keeps its own attention
            assert_close(out[name], default(attn1, edit[name]))
            continue
        q, k = (split(attn1, p(src[name])).repeat(B, 1, 1, 1) for p in (attn1.to_q, attn1.to_k))
        v = split(attn1, attn1.to_v(edit[name]))
        ref = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1) @ v
        assert_close(out[name], finish(attn1, ref))
