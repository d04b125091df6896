"""ST-Layout attention (`videdit.attention.layout`) and plug-and-play injection (`videdit.attention.injection`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videdit.attention.layout import (
    LayoutState,
    dense_modulated_attention,
    layout_attention,
    level_of,
    modulate_logits,
    modulated_attention,
    region_sizes,
    same_region,
    xi,
)


def literal_modulation(s, m, sigma, w):
    """The formula entry by entry, with python loops: S' = S + w sigma [M (Smax - S) - (1 - M)(S - Smin)]."""
    out = s.clone()
    for i in range(s.shape[0]):
        smax, smin = s[i].max(), s[i].min()
        for j in range(s.shape[1]):
            if m[i, j]:
                out[i, j] = s[i, j] + w * sigma[i] * (smax - s[i, j])
            else:
                out[i, j] = s[i, j] - w * sigma[i] * (s[i, j] - smin)
    return out


def test_modulate_logits_is_the_formula():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(7, 9, generator=g, dtype=torch.float64)
    m = torch.rand(7, 9, generator=g) > 0.5
    sigma = torch.rand(7, generator=g, dtype=torch.float64)
    assert torch.allclose(modulate_logits(s, m, sigma, 0.7), literal_modulation(s, m, sigma, 0.7), atol=1e-12)


def test_xi_and_region_sizes():
    assert xi(1) == 0.0 and xi(0) == 0.0
    assert xi(1001) == pytest.approx(1.0)
    assert xi(501) == pytest.approx(0.5**5)
    ids = torch.tensor([[0, 0, 1, -1, -1, -1]])
    assert region_sizes(ids).tolist() == [[2, 2, 1, 3, 3, 3]]


def _ids(n, regions, seed):
    return torch.randint(-1, regions, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_chunked_modulated_attention_matches_dense_reference(chunk):
    g = torch.Generator().manual_seed(1)
    heads, nq, nk, d = 3, 37, 41, 8
    q, k, v = (torch.randn(2, heads, n, d, generator=g) for n in (nq, nk, nk))
    q_ids, k_ids = _ids(nq, 3, 2), _ids(nk, 3, 3)
    sigma = torch.rand(nq, generator=g)
    dense_m = torch.tensor([[bool(a >= 0 and a == b) for b in k_ids.tolist()] for a in q_ids.tolist()])
    ref = dense_modulated_attention(q, k, v, dense_m, sigma, 0.8, scale=0.3)
    out = modulated_attention(q, k, v, q_ids, k_ids, sigma, 0.8, scale=0.3, chunk_size=chunk)
    assert torch.allclose(out, ref, atol=1e-5)
    # weight 0 is plain attention
    plain = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3)
    assert torch.allclose(modulated_attention(q, k, v, q_ids, k_ids, sigma, 0.0, scale=0.3, chunk_size=chunk),
                          plain, atol=1e-5)


def test_modulation_reaches_sdpa_as_a_bias_per_query_chunk(monkeypatch):
    from videdit.attention.frames import sdpa_writes_logits

    g = torch.Generator().manual_seed(5)
    heads, n, d = 2, 23, 8
    q, k, v = (torch.randn(heads, n, d, generator=g) for _ in range(3))  # one clip's (frame, position) pairs
    ids = _ids(n, 2, 6)
    sigma = 1 - region_sizes(ids).float() / n
    masks = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        masks.append((tuple(attn_mask.shape), sdpa_writes_logits(q, k, v, attn_mask)))
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    out = modulated_attention(q, k, v, ids, ids, sigma, 0.6, chunk_size=10)
    # chunks of 10, 10 and 3 queries against all 23 keys, each taken by torch's fused CPU kernel
    assert masks == [((1, heads, 10, n), False), ((1, heads, 10, n), False), ((1, heads, 3, n), False)]
    ref = dense_modulated_attention(q, k, v, same_region(ids, ids), sigma, 0.6)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_outside_queries_are_negative_to_everything():
    m = same_region(torch.tensor([-1, 0]), torch.tensor([-1, 0, 1]))
    assert m.tolist() == [[False, False, False], [False, True, False]]


def test_level_of_derives_resolution_from_token_count():
    assert level_of(64 * 64, (64, 64)) == (1, 64, 64)
    assert level_of(16 * 16, (64, 64)) == (4, 16, 16)
    assert level_of(12 * 10, (45, 40)) == (4, 12, 10)  # 45 -> 23 -> 12 (ceil), 40 -> 20 -> 10
    assert level_of(7, (64, 64)) is None


def _mass(probs, q_ids, k_ids, a, b):
    """Mean attention mass that queries of region a put on keys of region b."""
    return probs[..., q_ids == a, :][..., :, k_ids == b].sum(-1).mean().item()


def test_modulation_moves_mass_to_own_region_cross_and_self():
    g = torch.Generator().manual_seed(4)
    heads, n, d = 4, 64, 16
    ids = torch.arange(n) % 2  # two interleaved regions
    sigma = 1 - region_sizes(ids).float() / n
    # self-attention: keys are the same positions
    q, k = torch.randn(heads, n, d, generator=g), torch.randn(heads, n, d, generator=g)
    eye = torch.eye(n).expand(heads, n, n)  # v = one-hot keys: the output is the attention matrix
    before = modulated_attention(q, k, eye, ids, ids, sigma, 0.0)
    after = modulated_attention(q, k, eye, ids, ids, sigma, 0.3)
    for a in (0, 1):
        assert _mass(after, ids, ids, a, a) > _mass(before, ids, ids, a, a) + 0.05
        assert _mass(after, ids, ids, a, 1 - a) < _mass(before, ids, ids, a, 1 - a) - 0.05
    # cross-attention: 10 tokens, region 0 owns tokens 1-3, region 1 owns 4-5, others (-1) nobody
    tok = torch.tensor([-1, 0, 0, 0, 1, 1, -1, -1, -1, -1])
    kt = torch.randn(heads, 10, d, generator=g)
    eye = torch.eye(10).expand(heads, 10, 10)
    before = modulated_attention(q, kt, eye, ids, tok, sigma, 0.0)
    after = modulated_attention(q, kt, eye, ids, tok, sigma, 1.0)
    for a in (0, 1):
        assert _mass(after, ids, tok, a, a) > _mass(before, ids, tok, a, a) + 0.05
        assert _mass(after, ids, tok, a, 1 - a) < _mass(before, ids, tok, a, 1 - a)
        assert _mass(after, ids, tok, a, -1) < _mass(before, ids, tok, a, -1)


def _unet():
    from diffusers import UNet2DConditionModel

    from videdit.tiny import tiny_unet_config

    torch.manual_seed(0)
    return UNet2DConditionModel(**tiny_unet_config()).eval()


def _masks(frames, size):
    left = np.zeros((frames, size, size), bool)
    left[:, :, : size // 2] = True
    return [left, ~left]


def test_processors_without_timestep_are_cross_frame_attention_and_restore():
    from videdit.attention.frames import cross_frame_attention

    unet = _unet()
    frames = 3
    x = torch.randn(2 * frames, 4, 16, 16)
    emb = torch.randn(2 * frames, 77, 32)
    before = dict(unet.attn_processors)
    with torch.no_grad(), cross_frame_attention(unet, frames):
        ref = unet(x, 500, encoder_hidden_states=emb).sample
    state = LayoutState(frames, (16, 16), masks=_masks(frames, 16), token_ids=torch.full((77,), -1))
    with torch.no_grad(), layout_attention(unet, state):
        out = unet(x, 500, encoder_hidden_states=emb).sample
        state.timestep = 900.0
        modulated = unet(x, 500, encoder_hidden_states=emb).sample
    assert torch.allclose(out, ref, atol=1e-5)
    # with a timestep the conditional half changes and the unconditional half does not (self_branch="cond";
    # cross-attention of the unconditional half is never modulated)
    assert torch.allclose(modulated[:frames], ref[:frames], atol=1e-5)
    assert not torch.allclose(modulated[frames:], ref[frames:], atol=1e-4)
    assert all(p is before[n] for n, p in unet.attn_processors.items())  # the very objects are back


def test_layer_factors_select_where_modulation_happens():
    unet = _unet()
    frames = 2
    x = torch.randn(2 * frames, 4, 16, 16)
    emb = torch.randn(2 * frames, 77, 32)
    # the tiny UNet has attention at factors 4 (4x4) and 8 (2x2) of a 16x16 latent, none at 2
    outs = []
    for factors in ((2,), (4, 8)):
        state = LayoutState(frames, (16, 16), masks=_masks(frames, 16), token_ids=torch.full((77,), -1),
                            factors=factors, timestep=900.0)
        with torch.no_grad(), layout_attention(unet, state):
            outs.append(unet(x, 500, encoder_hidden_states=emb).sample)
    state.timestep = None
    with torch.no_grad(), layout_attention(unet, state):
        plain = unet(x, 500, encoder_hidden_states=emb).sample
    assert torch.allclose(outs[0], plain, atol=1e-5)
    assert not torch.allclose(outs[1], plain, atol=1e-4)


def test_uncond_branch_and_frames2_choices():
    unet = _unet()
    frames = 2
    x = torch.randn(2 * frames, 4, 16, 16)
    emb = torch.randn(2 * frames, 77, 32)
    tok = torch.full((77,), -1)
    runs = {}
    for branch, sig in (("cond", "clip"), ("uncond", "clip"), ("cond", "frames2")):
        state = LayoutState(frames, (16, 16), masks=_masks(frames, 16), token_ids=tok, self_branch=branch,
                            self_sigma=sig, cross_strength=0.0, timestep=900.0)
        with torch.no_grad(), layout_attention(unet, state):
            runs[branch, sig] = unet(x, 500, encoder_hidden_states=emb).sample
    state.timestep = None
    with torch.no_grad(), layout_attention(unet, state):
        plain = unet(x, 500, encoder_hidden_states=emb).sample
    unc = runs["uncond", "clip"]
    assert not torch.allclose(unc[:frames], plain[:frames], atol=1e-4)
    assert torch.allclose(unc[frames:], plain[frames:], atol=1e-5)
    assert not torch.allclose(runs["cond", "frames2"], runs["cond", "clip"], atol=1e-5)
    ids = state.ids(4, 4, "cpu").reshape(-1)
    s_clip = LayoutState(frames, (16, 16), masks=_masks(frames, 16)).self_layout(4, 4, "cpu")[1]
    s_f2 = LayoutState(frames, (16, 16), masks=_masks(frames, 16), self_sigma="frames2").self_layout(4, 4, "cpu")[1]
    assert torch.allclose(s_clip, torch.full_like(s_clip, 0.5)) and ids.numel() == 32
    assert torch.allclose(s_f2, torch.full_like(s_f2, 1 - 0.5 / frames))


# ---------------------------------------------------------------------------------------
# Injection

def test_injection_skips_missing_layers_and_restores():
    from videdit.attention.injection import SD15_ATTENTIONS, SD15_RESNETS, InjectionState, feature_injection

    unet = _unet()
    before = dict(unet.attn_processors)
    state = InjectionState()
    with feature_injection(unet, state, SD15_RESNETS, SD15_ATTENTIONS) as used:
        # the tiny UNet's up_blocks.2 has no attention and up_blocks.1 two transformers (0, 1)
        assert used["resnets"] == ["up_blocks.1.resnets.0", "up_blocks.1.resnets.1", "up_blocks.2.resnets.0"]
        assert used["attentions"] == ["up_blocks.1.attentions.1.transformer_blocks.0.attn1.processor"]
    assert {n: type(p) for n, p in unet.attn_processors.items()} == {n: type(p) for n, p in before.items()}
    assert not unet._forward_pre_hooks and not unet.get_submodule("up_blocks.1.resnets.0.conv2")._forward_hooks


def test_injection_brings_the_output_towards_the_source():
    from videdit.attention.frames import cross_frame_attention
    from videdit.attention.injection import InjectionState, feature_injection

    unet = _unet()
    frames = 2
    g = torch.Generator().manual_seed(5)
    src, tgt = torch.randn(frames, 4, 16, 16, generator=g), torch.randn(frames, 4, 16, 16, generator=g)
    emb = torch.randn(frames, 77, 32, generator=g)
    layers = ["up_blocks.1.resnets.0", "up_blocks.1.resnets.1", "up_blocks.2.resnets.0", "up_blocks.2.resnets.1",
              "up_blocks.3.resnets.0", "up_blocks.3.resnets.1"]
    state = InjectionState(mode="record", keep={500})
    with torch.no_grad(), cross_frame_attention(unet, frames), \
            feature_injection(unet, state, layers, ["up_blocks.1.attentions.0", "up_blocks.1.attentions.1"]):
        out_src = unet(src, 500, encoder_hidden_states=emb).sample
        unet(src, 700, encoder_hidden_states=emb)  # not kept
        state.mode = "off"
        out_tgt = unet(tgt, 500, encoder_hidden_states=emb).sample
        state.mode = "inject"
        injected = unet(torch.cat([tgt, tgt]), 500, encoder_hidden_states=torch.cat([emb, emb])).sample
        other_t = unet(tgt, 300, encoder_hidden_states=emb).sample  # nothing stored at t=300
    assert {key[2] for key in state.features} == {500}
    assert {key[1] for key in state.features} == {"conv2", "q", "k"}
    far, near = (out_tgt - out_src).norm(), (injected[frames:] - out_src).norm()
    assert near < 0.8 * far
    assert torch.allclose(injected[:frames], injected[frames:], atol=1e-5)
    with torch.no_grad(), cross_frame_attention(unet, frames):
        assert torch.allclose(other_t, unet(tgt, 300, encoder_hidden_states=emb).sample, atol=1e-5)
