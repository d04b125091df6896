"""Cross-frame attention: chunked maths against a dense reference, and the processor in a tiny UNet."""

import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from videdit.attention import (
    LayerName,
    install_processors,
    is_cross_attention,
    is_self_attention,
    is_temporal,
    parse_layer_name,
)
from videdit.attention.frames import (
    CrossFrameAttnProcessor,
    FrameAttentionState,
    as_frames,
    as_sequence,
    chunked_attention,
    cross_frame_attention,
    default_chunk_size,
    frame_attention,
    sdpa_writes_logits,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def dense_reference(q, k, v, num_frames, mode):
    """softmax(Q K^T / sqrt(d)) V over the concatenated keys, written out with no chunking.

    Sparse keys follow the sparse-causal formula of Tune-A-Video (section 4.1) literally,
    [k[0], k[f-1]] with frame 0 using [k[0], k[0]], duplicates kept.
    """
    branches = q.shape[0] // num_frames
    q, k, v = (t.reshape(branches, num_frames, *t.shape[1:]) for t in (q, k, v))
    outs = []
    for f in range(num_frames):
        frames = list(range(num_frames)) if mode == "full" else [0, max(f - 1, 0)]
        keys = torch.cat([k[:, g] for g in frames], dim=-2)
        values = torch.cat([v[:, g] for g in frames], dim=-2)
        logits = q[:, f] @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])
        outs.append(logits.softmax(dim=-1) @ values)
    return torch.stack(outs, dim=1).flatten(0, 1)


def random_qkv(branches=2, frames=3, heads=2, tokens=10, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(branches * frames, heads, tokens, dim, generator=g) for _ in range(3)]


@pytest.mark.parametrize("mode", ["full", "sparse"])
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 7, 10, 64, None])
def test_chunked_equals_dense(mode, chunk_size):
    q, k, v = random_qkv()
    out = frame_attention(q, k, v, num_frames=3, mode=mode, chunk_size=chunk_size)
    torch.testing.assert_close(out, dense_reference(q, k, v, 3, mode), atol=1e-5, rtol=1e-5)


def test_one_frame_full_is_ordinary_attention():
    q, k, v = random_qkv(frames=1)
    out = frame_attention(q, k, v, num_frames=1, mode="full", chunk_size=3)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_bias_reaches_each_chunk():
    q, k, v = random_qkv(branches=1, frames=2)
    bias = torch.randn(q.shape[-2], k.shape[-2])  # (query, key), shared by frames and heads

    out = chunked_attention(q, k, v, chunk_size=3, bias=lambda a, b: bias[a:b])

    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def sdpa_spy(monkeypatch):
    """Record (queries, keys) shapes of every scaled_dot_product_attention call."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append((tuple(q.shape), tuple(k.shape)))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return seen


def projected(branches, frames, heads, tokens, dim, seed=0):
    """q, k, v as `run_attention_layer` makes them: a (B*F, N, heads*d) projection split into heads."""
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(branches * frames, tokens, heads * dim, generator=g) for _ in range(3)]
    return x, [t.view(branches * frames, tokens, heads, dim).transpose(1, 2) for t in x]


def test_fused_kernel_takes_all_frames_in_one_call(monkeypatch):
    assert not sdpa_writes_logits(*random_qkv())  # torch's CPU flash kernel streams the keys
    seen = sdpa_spy(monkeypatch)
    (xq, _, _), (q, k, v) = projected(branches=2, frames=4, heads=2, tokens=10, dim=8)
    # all frames of a branch are one sequence, a view of the projection itself: nothing is copied
    assert as_sequence(q, 4).data_ptr() == xq.data_ptr() and as_sequence(q, 4).shape == (2, 2, 40, 8)
    assert torch.equal(as_frames(as_sequence(q, 4), 4), q)

    full = frame_attention(q, k, v, 4, "full")
    assert seen == [((2, 2, 40, 8), (2, 2, 40, 8))]
    sparse = frame_attention(q, k, v, 4, "sparse")
    assert seen[1:] == [((8, 2, 10, 8), (8, 2, 20, 8))]  # every frame against its two frames, one call
    torch.testing.assert_close(full, dense_reference(q, k, v, 4, "full"), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse, dense_reference(q, k, v, 4, "sparse"), atol=1e-5, rtol=1e-5)


def test_math_kernel_is_chunked_by_the_budget(monkeypatch):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import videdit.attention.frames as frames

    q, k, v = random_qkv(branches=2, frames=4, heads=2, tokens=10)
    assert sdpa_writes_logits(q[0], k[0], v[0])  # 3-D input: only the math kernel takes it
    monkeypatch.setattr(frames, "LOGITS_BUDGET", 2 * 2 * 7 * 40)  # 7 queries of 40 keys per chunk
    seen = sdpa_spy(monkeypatch)
    with sdpa_kernel([SDPBackend.MATH]):
        assert sdpa_writes_logits(q, k, v)
        out = frame_attention(q, k, v, 4, "full")
    assert [s[0][-2] for s in seen] == [7] * 5 + [5]  # 40 queries in chunks of 7
    torch.testing.assert_close(out, dense_reference(q, k, v, 4, "full"), atol=1e-5, rtol=1e-5)
    # a torch that cannot say which kernel it would pick: chunk
    monkeypatch.delattr(torch, "_fused_sdp_choice")
    assert sdpa_writes_logits(q, k, v)


def test_chunks_bound_the_logits(monkeypatch):
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append(math.prod(q.shape[:-1]) * k.shape[-2])
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    q, k, v = random_qkv(branches=2, frames=4, heads=2, tokens=10)
    frame_attention(q, k, v, 4, "full", chunk_size=3)
    assert max(seen) == 2 * 2 * 3 * (4 * 10)  # branches x heads x chunk x keys, never (F*N)^2
    assert default_chunk_size(batch_heads=16, num_keys=1 << 16, budget=1 << 24) == 16
    assert default_chunk_size(batch_heads=16, num_keys=1 << 30, budget=1 << 24) == 1
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_attention(q, k, v, chunk_size=0)


def test_bad_batch_and_mode():
    q, k, v = random_qkv(branches=1, frames=3)
    with pytest.raises(ValueError, match="not a multiple of num_frames=2"):
        frame_attention(q, k, v, num_frames=2)
    with pytest.raises(ValueError, match="mode"):
        frame_attention(q, k, v, num_frames=3, mode="dense")
    with pytest.raises(ValueError, match="mode"):
        FrameAttentionState(3, mode="causal")


def test_layer_names():
    name = "up_blocks.1.attentions.2.transformer_blocks.0.attn1.processor"
    assert parse_layer_name(name) == LayerName("up", 1, 2, 0, "attn1")
    assert parse_layer_name("mid_block.attentions.0.transformer_blocks.1.attn2") == LayerName("mid", 0, 0, 1, "attn2")
    temporal = "down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1.processor"
    assert parse_layer_name(temporal).temporal and is_temporal(temporal) and not is_temporal(name)
    assert is_temporal("transformer_in.transformer_blocks.0.attn1.processor")
    assert parse_layer_name("transformer_in.transformer_blocks.0.attn1.processor") is None
    assert is_self_attention(name) and not is_cross_attention(name)
    assert is_cross_attention(name.replace("attn1", "attn2")) and not is_self_attention(name.replace("attn1", "attn2"))


def test_standard_steps_match_diffusers():
    # group norm, 4-D input, residual and output rescaling: the steps around the attention itself
    torch.manual_seed(0)
    attn = Attention(
        query_dim=16, heads=2, dim_head=8, norm_num_groups=4, residual_connection=True, rescale_output_factor=2.0
    ).eval()
    x = torch.randn(3, 16, 4, 5)
    with torch.no_grad():
        expected = AttnProcessor2_0()(attn, x)
        out = CrossFrameAttnProcessor(FrameAttentionState(1, chunk_size=7))(attn, x)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    ).eval()


def run(unet, sample, context):
    with torch.no_grad():
        return unet(sample, 10, encoder_hidden_states=context).sample


def clip(branches=2, frames=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(branches * frames, 4, 16, 16, generator=g)
    context = torch.randn(branches, 1, 7, 32, generator=g).expand(-1, frames, -1, -1).reshape(-1, 7, 32)
    return sample, context


def test_one_frame_matches_default_processors(unet):
    sample, context = clip(frames=1)
    expected = run(unet, sample, context)
    for mode in ("full", "sparse"):
        with cross_frame_attention(unet, num_frames=1, mode=mode, chunk_size=100):
            torch.testing.assert_close(run(unet, sample, context), expected, atol=1e-5, rtol=1e-5)


def test_frames_see_each_other(unet):
    sample, context = clip(frames=3)
    per_frame = run(unet, sample, context)
    with cross_frame_attention(unet, num_frames=3, chunk_size=100) as state:
        full = run(unet, sample, context)
        state.mode = "sparse"
        sparse = run(unet, sample, context)
    assert (full - per_frame).abs().max() > 1e-3
    assert (sparse - per_frame).abs().max() > 1e-3
    # sparse-causal: the first frame of each branch attends only to itself
    torch.testing.assert_close(sparse[0::3], per_frame[0::3], atol=1e-5, rtol=1e-5)
    # branches do not mix: a branch alone gives the same frames
    with cross_frame_attention(unet, num_frames=3):
        torch.testing.assert_close(run(unet, sample[:3], context[:3]), full[:3], atol=1e-5, rtol=1e-5)


def test_identical_frames_give_identical_outputs(unet):
    sample, context = clip(branches=1, frames=2)
    sample = torch.cat([sample, sample[:1]])  # frames a, b, a
    context = torch.cat([context, context[:1]])
    with cross_frame_attention(unet, num_frames=3):
        out = run(unet, sample, context)
    torch.testing.assert_close(out[0], out[2], atol=1e-5, rtol=1e-5)
    # a still clip: attending to copies of itself is attending to itself
    still = sample[:1].expand(3, -1, -1, -1)
    per_frame = run(unet, still, context[:1].expand(3, -1, -1))
    with cross_frame_attention(unet, num_frames=3):
        torch.testing.assert_close(
            run(unet, still, context[:1].expand(3, -1, -1)), per_frame, atol=1e-5, rtol=1e-5
        )


def test_processors_restored_and_cross_attention_untouched(unet):
    before = dict(unet.attn_processors)
    with cross_frame_attention(unet, num_frames=2) as state:
        inside = unet.attn_processors
        assert all(isinstance(inside[n], CrossFrameAttnProcessor) for n in inside if is_self_attention(n))
        assert all(inside[n] is before[n] for n in inside if is_cross_attention(n))
        assert all(inside[n].state is state for n in inside if is_self_attention(n))
    assert all(unet.attn_processors[n] is p for n, p in before.items())

    with pytest.raises(RuntimeError):
        with install_processors(unet, lambda name, attn: CrossFrameAttnProcessor(FrameAttentionState(1))):
            raise RuntimeError("the body failed")
    assert all(unet.attn_processors[n] is p for n, p in before.items())


def test_wrong_batch_raises(unet):
    sample, context = clip(branches=1, frames=3)
    with cross_frame_attention(unet, num_frames=2):
        with pytest.raises(ValueError, match=r"attn1.*not a multiple of num_frames=2"):
            run(unet, sample, context)
