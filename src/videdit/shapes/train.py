"""Train the ShapesWorld models: `python -m videdit.shapes.train KIND --out DIR --seed S --minutes M [--device cuda]`.

KIND is one of
  vae   AutoencoderKL, 4 latent channels, 64x64 -> 16x16 (factor 4), about 1 M parameters
  sd    text-to-image latent diffusion in the Stable Diffusion classes (needs --vae)
  ip2p  instruction editing in the InstructPix2Pix classes, initialised from shapes-sd (needs --init)
  i2v   image-to-video in the I2VGen-XL classes, with shapes-sd's VAE and text encoder (needs --init)

Training data is rendered on the fly by `videdit.shapes.world` from a seeded generator, so a run
is reproducible from (seed, step count). Training stops after `--minutes` of wall time or
`--steps` steps, whichever comes first; a checkpoint is written every few minutes and a run
restarted with the same `--out` resumes from it.

Runs on the CPU by default (the shipped models were trained on 2 CPU cores) or on a GPU
(`--device cuda`). The scenes are rendered, and every random draw is made, on the CPU whatever the
device, so a run draws the same data, timesteps and noise on either; only the arithmetic moves.

Recipe sources: latent diffusion with epsilon prediction and the SD 1.x noise schedule
(Rombach et al. 2022); classifier-free guidance by caption dropout (Ho & Salimans 2022);
min-SNR-gamma loss weighting (Hang et al. 2023); InstructPix2Pix conditioning and its
dropout of text and image conditioning (Brooks et al. 2023).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from videdit.shapes import world

HELD_OUT_SEED = 10**6  # evaluation draws from this stream; training seeds stay below it
CHECKPOINT_MINUTES = 5.0  # default of --checkpoint-minutes


# ----------------------------------------------------------------------------- model configs (one source of truth)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=16,
    sample_size=64,
    mid_block_add_attention=False,  # fully convolutional, so it can train on crops
)
VAE_CROP = 32  # the VAE trains on random 32x32 crops (4x cheaper per image than whole frames)

UNET_CONFIG = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 128, 128),  # 5.8 M parameters; at 32/64/64 (1.5 M) 6,000 steps left colour at 0.53
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=4,  # (diffusers' legacy name: the number of heads)
    norm_num_groups=32,
)

TEXT_CONFIG = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77)

# SD 1.x noise schedule; DDIM for sampling with clip_sample off (on, latent samples wash out)
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
DDIM_EXTRA = dict(clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


# ----------------------------------------------------------------------------- small helpers

def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_images(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def lr_at(step: int, frac: float, base: float, warmup: int = 200) -> float:
    """Linear warm-up, then cosine decay to 10% over the fraction `frac` of the run's budget."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def frame_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    pairs = [world.random_frame(rng) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def held_out_images(n: int) -> np.ndarray:
    rng = np.random.default_rng(HELD_OUT_SEED)
    return np.stack([world.random_frame(rng)[0] for _ in range(n)])


class Budget:
    """Stops a run after `minutes` of wall time (counting time spent before a resume) or `steps` steps, and
    says when the next checkpoint is due (every `checkpoint_minutes`)."""

    def __init__(self, minutes: float, steps: int | None, elapsed: float = 0.0,
                 checkpoint_minutes: float = CHECKPOINT_MINUTES):
        self.seconds, self.steps, self.start = minutes * 60, steps, time.time() - elapsed
        self.checkpoint_s, self.last_checkpoint = checkpoint_minutes * 60, time.time()

    def checkpoint_due(self) -> bool:
        """True once every `checkpoint_minutes` (the clock restarts when it says so)."""
        if time.time() - self.last_checkpoint <= self.checkpoint_s:
            return False
        self.last_checkpoint = time.time()
        return True

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    def frac(self, step: int) -> float:
        by_time = self.elapsed / self.seconds
        return max(by_time, step / self.steps) if self.steps else by_time

    def done(self, step: int) -> bool:
        return self.frac(step) >= 1.0


def ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, step: int, max_decay: float = 0.995) -> None:
    """theta_ema <- d * theta_ema + (1 - d) * theta, with warm-up d = min(max_decay, (1 + step) / (10 + step))."""
    d = min(max_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ema:
                ema[name].mul_(d).add_(p.detach(), alpha=1 - d)


def log(path: Path, **fields) -> None:
    line = json.dumps(fields)
    print(line, flush=True)
    with open(path / "log.jsonl", "a") as f:
        f.write(line + "\n")


def save_ckpt(out: Path, state: dict) -> None:
    tmp = out / "ckpt.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(out / "ckpt.pt")


def load_ckpt(out: Path, device: str | torch.device = "cpu") -> dict | None:
    p = out / "ckpt.pt"
    return torch.load(p, weights_only=False, map_location=device) if p.exists() else None


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda[:N]', or 'auto' (a CUDA GPU where there is one, else the CPU); ValueError if CUDA is asked for
    and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch build sees no CUDA GPU (torch {torch.__version__})")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: use cpu, cuda, cuda:N or auto")
    return device


def posterior_sample(post, rng: np.random.Generator) -> torch.Tensor:
    """z = mu + sigma n, n ~ N(0, I): a VAE posterior sample whose noise comes from the run's numpy generator,
    which is seeded, checkpointed and on the CPU, rather than from torch's global generator (unseeded in some
    runs, and the GPU's own on a GPU)."""
    n = torch.from_numpy(rng.standard_normal(tuple(post.mean.shape), dtype=np.float32)).to(post.mean.device)
    return post.mean + post.std * n


def randn(shape, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from `gen` (the same numbers on every device), then moved."""
    return torch.randn(shape, generator=gen).to(device)


def min_snr_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float = 5.0, prediction: str = "epsilon",
                   terminal: bool = False) -> torch.Tensor:
    """Min-SNR-gamma weight (Hang et al. 2023, sec. 3.4), SNR = abar / (1 - abar):
    w(t) = min(SNR, gamma) / SNR for epsilon prediction, min(SNR, gamma) / (SNR + 1) for v prediction.

    In x0 terms these weigh a step by min(SNR, gamma), which vanishes as SNR -> 0. With `terminal`
    (v prediction only) the weight is min(SNR + 1, gamma) / (SNR + 1): at least 1 in x0 terms, so the
    steps near SNR = 0, where sampling starts and only the conditioning (a first frame, a source image)
    can tell the model what to draw, keep the plain v loss instead of almost none."""
    abar = alphas_cumprod[t]
    snr = abar / (1 - abar).clamp(min=1e-8)
    if prediction != "v_prediction":
        return torch.clamp(snr, max=gamma) / snr
    if terminal:
        return torch.clamp(snr + 1, max=gamma) / (snr + 1)
    return torch.clamp(snr, max=gamma) / (snr + 1)


def v_target(abar: torch.Tensor, t: torch.Tensor, z0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v-prediction target (Salimans & Ho 2022, sec. 4): v = sqrt(abar_t) eps - sqrt(1 - abar_t) z_0."""
    a = abar[t].view(-1, *([1] * (z0.dim() - 1)))
    return a.sqrt() * noise - (1 - a).sqrt() * z0


# ----------------------------------------------------------------------------- VAE

def train_vae(out: Path, seed: int, minutes: float, steps: int | None, batch: int = 16, lr: float = 2e-3, kl_weight: float = 1e-6, init: Path | None = None, checkpoint_minutes: float = CHECKPOINT_MINUTES, device: torch.device = torch.device("cpu")) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    if init is None:
        vae = AutoencoderKL(**VAE_CONFIG)
        quiet_posterior(vae)
        params, crop = list(vae.parameters()), VAE_CROP
    else:
        # second stage: the decoder alone on whole frames (GroupNorm statistics of crops differ from
        # those of whole frames); the encoder, hence the latent space and its scaling, stays as is
        vae = AutoencoderKL.from_pretrained(init)
        vae.encoder.requires_grad_(False), vae.quant_conv.requires_grad_(False)
        params, crop = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters()), None
    vae.to(device)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ck = load_ckpt(out, device)
    step, elapsed, rng = 0, 0.0, np.random.default_rng(seed)
    if ck:
        vae.load_state_dict(ck["model"]), opt.load_state_dict(ck["opt"])
        step, elapsed, rng = ck["step"], ck["elapsed"], ck["rng"]
    budget = Budget(minutes, steps, elapsed, checkpoint_minutes)
    vae.train()
    while not budget.done(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, budget.frac(step), lr, warmup=100)
        x = to_tensor(frame_batch(rng, batch)[0])
        x = (random_crops(x, crop, rng) if crop else x).to(device)
        post = vae.encode(x).latent_dist
        rec = vae.decode(posterior_sample(post, rng)).sample
        mse = F.mse_loss(rec, x)
        loss = mse + 0.1 * F.l1_loss(rec, x) + kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            log(out, kind="vae", step=step, s=round(budget.elapsed), mse=round(mse.item(), 5), psnr_train=round(10 * math.log10(4 / mse.item()), 2))
        if budget.checkpoint_due():
            save_ckpt(out, dict(model=vae.state_dict(), opt=opt.state_dict(), step=step, elapsed=budget.elapsed, rng=rng))
    save_ckpt(out, dict(model=vae.state_dict(), opt=opt.state_dict(), step=step, elapsed=budget.elapsed, rng=rng))
    vae.eval().to("cpu")
    scale = latent_scaling_factor(vae) if init is None else vae.config.scaling_factor
    vae.register_to_config(scaling_factor=scale)
    score = vae_psnr(vae, held_out_images(500))
    vae.save_pretrained(out / "vae", safe_serialization=True)
    log(out, kind="vae", done=True, step=step, minutes=round(budget.elapsed / 60, 1), scaling_factor=scale, psnr_held_out=round(score, 2))


def quiet_posterior(vae, logvar: float = -6.0) -> None:
    """Start the posterior's log-variance at `logvar` (std ~0.05) instead of 0 (std 1).

    With the tiny KL weight of latent-diffusion autoencoders the encoder only slowly learns to
    shrink a unit-variance posterior, and until then the decoder sees mostly noise.
    """
    c = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[c:] = 0
        vae.quant_conv.bias[c:] = logvar


def random_crops(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """One random size x size crop per image, at offsets that are multiples of 4 (the latent grid)."""
    h, w = x.shape[-2:]
    ys = rng.integers(0, (h - size) // 4 + 1, len(x)) * 4
    xs = rng.integers(0, (w - size) // 4 + 1, len(x)) * 4
    return torch.stack([img[:, y : y + size, x0 : x0 + size] for img, y, x0 in zip(x, ys, xs)])


@torch.no_grad()
def latent_scaling_factor(vae, n: int = 512) -> float:
    """1 / std of posterior samples on held-in images, so scaled latents have about unit std (as SD's 0.18215)."""
    rng = np.random.default_rng(12345)
    x = to_tensor(frame_batch(rng, n)[0])
    z = torch.cat([posterior_sample(vae.encode(x[i : i + 64]).latent_dist, rng) for i in range(0, n, 64)])
    return float(1.0 / z.std())


@torch.no_grad()
def vae_round_trip(vae, images: np.ndarray, batch: int = 50) -> np.ndarray:
    """(N, H, W, 3) uint8 -> decoded posterior modes of their latents, uint8."""
    return np.concatenate([to_images(vae.decode(vae.encode(to_tensor(images[i : i + batch])).latent_dist.mode()).sample)
                           for i in range(0, len(images), batch)])


def vae_psnr(vae, images: np.ndarray) -> float:
    """Mean PSNR (dB) of reconstructions from the posterior mode."""
    return float(np.mean([psnr(a, b) for a, b in zip(vae_round_trip(vae, images), images)]))


# ----------------------------------------------------------------------------- text encoder + tokenizer

def make_tokenizer(dir: Path):
    from transformers import CLIPTokenizer

    from videdit.tokenizer import write_clip_tokenizer

    write_clip_tokenizer(world.VOCAB, dir)
    return CLIPTokenizer.from_pretrained(dir)


def make_text_encoder(tokenizer, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    bos = tokenizer.convert_tokens_to_ids(tokenizer.bos_token)
    config = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, **TEXT_CONFIG)
    return CLIPTextModel(config)


class TokenCache:
    """Token ids of each distinct text, computed once (the grammar has few distinct strings)."""

    def __init__(self, tokenizer):
        self.tok, self.cache = tokenizer, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        for t in set(texts) - set(self.cache):
            self.cache[t] = self.tok(t, padding="max_length", max_length=self.tok.model_max_length, truncation=True, return_tensors="pt").input_ids[0]
        return torch.stack([self.cache[t] for t in texts])


def ddim_scheduler(prediction: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULE, **{**DDIM_EXTRA, "prediction_type": prediction})


# ----------------------------------------------------------------------------- diffusion training (shared loop)

def diffusion_loop(out: Path, kind: str, modules: dict, trainable: list[str], sample_batch, seed: int, minutes: float, steps: int | None, lr: float, batch: int, on_ckpt=None, prediction: str = "epsilon", terminal: bool = False, checkpoint_minutes: float = CHECKPOINT_MINUTES, device: torch.device = torch.device("cpu")) -> int:
    """Epsilon- or v-prediction training with min-SNR weights, gradient clipping and EMA; returns the step count.

    `sample_batch(rng, n)` returns (clean scaled latents z0, unet extra input or None, encoder_hidden_states),
    on `device`. `modules` maps names to nn.Modules, moved to `device`; those in `trainable` are optimised and
    EMA-averaged. The loss is read back from the device only when it is logged, so that on a GPU the next
    batch is rendered while the last step still runs.
    """
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler(**SCHEDULE)
    abar = noise_sched.alphas_cumprod.to(device)
    for m in modules.values():
        m.to(device)
    params = [p for n in trainable for p in modules[n].parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema = {n: {k: v.detach().clone() for k, v in modules[n].named_parameters()} for n in trainable}
    step, elapsed, rng = 0, 0.0, np.random.default_rng(seed)
    ck = load_ckpt(out, device)
    if ck:
        for n in trainable:
            modules[n].load_state_dict(ck["models"][n])
        opt.load_state_dict(ck["opt"])
        ema, step, elapsed, rng = ck["ema"], ck["step"], ck["elapsed"], ck["rng"]
    gen = torch.Generator().manual_seed(seed + step)
    budget = Budget(minutes, steps, elapsed, checkpoint_minutes)

    def checkpoint():
        save_ckpt(out, dict(models={n: modules[n].state_dict() for n in trainable}, ema=ema, opt=opt.state_dict(), step=step, elapsed=budget.elapsed, rng=rng))

    for n in trainable:
        modules[n].train()
    running = []
    while not budget.done(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, budget.frac(step), lr)
        z0, extra, hidden = sample_batch(rng, batch)
        noise = randn(z0.shape, gen, device)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (z0.shape[0],), generator=gen).to(device)
        zt = noise_sched.add_noise(z0, noise, t)  # z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps
        unet_in = zt if extra is None else torch.cat([zt, extra], 1)
        pred = modules["unet"](unet_in, t, encoder_hidden_states=hidden).sample
        target = noise if prediction == "epsilon" else v_target(abar, t, z0, noise)
        per_sample = F.mse_loss(pred, target, reduction="none").flatten(1).mean(dim=1)  # images and videos
        loss = (min_snr_weight(abar, t, prediction=prediction, terminal=terminal) * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for n in trainable:
            ema_update(ema[n], modules[n], step)
        step += 1
        running.append(loss.detach())
        if step % 50 == 0:
            log(out, kind=kind, step=step, s=round(budget.elapsed), loss=round(torch.stack(running).mean().item(), 4), lr=opt.param_groups[0]["lr"])
            running = []
        if budget.checkpoint_due():
            checkpoint()
            if on_ckpt:
                on_ckpt(ema, step)
    checkpoint()
    with torch.no_grad():  # EMA weights are the ones we ship
        for n in trainable:
            for k, p in modules[n].named_parameters():
                p.copy_(ema[n][k])
            modules[n].eval()
    for m in modules.values():
        m.to("cpu")
    log(out, kind=kind, done=True, step=step, minutes=round(budget.elapsed / 60, 1))
    return step


def save_pipeline(pipe, out: Path, name: str) -> None:
    """Write fp32 and fp16 copies of a diffusers pipeline folder (temporary name, then rename)."""
    for suffix, dtype in (("", torch.float32), ("-fp16", torch.float16)):
        dest = out / f"{name}{suffix}"
        tmp = out / f".{name}{suffix}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pipe.to(dtype).save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    pipe.to(torch.float32)


# ----------------------------------------------------------------------------- shapes-sd

def train_sd(out: Path, seed: int, minutes: float, steps: int | None, vae_dir: Path, batch: int = 32, lr: float = 6e-4, drop_caption: float = 0.1, checkpoint_minutes: float = CHECKPOINT_MINUTES, device: torch.device = torch.device("cpu")) -> None:
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    vae = AutoencoderKL.from_pretrained(vae_dir).eval().requires_grad_(False).to(device)
    tokenizer = make_tokenizer(out / "tokenizer-src")
    text_encoder = make_text_encoder(tokenizer, seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    tokens = TokenCache(tokenizer)
    scale = vae.config.scaling_factor

    def sample_batch(rng, n):
        images, captions = frame_batch(rng, n)
        captions = ["" if rng.random() < drop_caption else c for c in captions]  # for classifier-free guidance
        with torch.no_grad():
            z0 = posterior_sample(vae.encode(to_tensor(images).to(device)).latent_dist, rng) * scale
        hidden = text_encoder(tokens(captions).to(device))[0]
        return z0, None, hidden

    modules = dict(unet=unet, text_encoder=text_encoder)

    def snapshot(ema, step):
        build = lambda: StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=ddim_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        _save_ema_snapshot(out, "pipeline-snapshot", modules, ema, build)

    n_steps = diffusion_loop(out, "sd", modules, ["unet", "text_encoder"], sample_batch, seed, minutes, steps, lr, batch, on_ckpt=snapshot, checkpoint_minutes=checkpoint_minutes, device=device)
    vae.to("cpu")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=ddim_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    save_pipeline(pipe, out, "pipeline")
    log(out, kind="sd", saved=str(out / "pipeline"), steps=n_steps)


def _save_ema_snapshot(out: Path, name: str, modules: dict, ema: dict, build=None, save=None) -> None:
    """Write `out/name` with the current EMA weights swapped in (then restore the training weights):
    `build()` returns a diffusers pipeline to save, or `save(folder)` writes the folder itself."""
    backup = {n: {k: p.detach().clone() for k, p in modules[n].named_parameters()} for n in ema}
    with torch.no_grad():
        for n in ema:
            for k, p in modules[n].named_parameters():
                p.copy_(ema[n][k])
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if save is not None:
            save(tmp)
        else:
            build().save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(out / name, ignore_errors=True)
        tmp.rename(out / name)
        for n in ema:
            for k, p in modules[n].named_parameters():
                p.copy_(backup[n][k])


# ----------------------------------------------------------------------------- shapes-ip2p

def triple_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    src, tgt, text = [], [], []
    for _ in range(n):
        s, e, t = world.random_triple(rng)
        src.append(world.render(s)[0]), tgt.append(world.render(t)[0]), text.append(e.instruction)
    return np.stack(src), np.stack(tgt), text


def ip2p_training_batch(vae, text_encoder, tokens, empty: torch.Tensor, src: np.ndarray, tgt: np.ndarray,
                        text: list[str], rng: np.random.Generator, p_drop: float):  # on the device of `empty`
    """(z_0 of the targets, c_I of the sources, text states) for `diffusion_loop`, with the
    InstructPix2Pix conditioning dropout (Brooks et al. 2023, sec. 3.2.1): u < 2p drops the text,
    p <= u < 3p drops the image (both for p <= u < 2p)."""
    device = empty.device
    with torch.no_grad():
        z0 = posterior_sample(vae.encode(to_tensor(tgt).to(device)).latent_dist, rng) * vae.config.scaling_factor
        # the IP2P pipeline conditions on the unscaled posterior mode of the source image
        zc = vae.encode(to_tensor(src).to(device)).latent_dist.mode()
        hidden = text_encoder(tokens(text).to(device))[0]
    u = torch.from_numpy(rng.random(len(text))).float().to(device)
    drop_text = (u < 2 * p_drop)[:, None, None]
    drop_image = ((u >= p_drop) & (u < 3 * p_drop))[:, None, None, None]
    hidden = torch.where(drop_text, empty.expand_as(hidden), hidden)
    zc = torch.where(drop_image, torch.zeros_like(zc), zc)
    return z0, zc, hidden


def ip2p_unet_from(sd_unet):
    """The shapes-sd UNet with 8 input channels: noisy latent + source-image latent, new channels zero-initialised."""
    from diffusers import UNet2DConditionModel

    config = dict(sd_unet.config)
    config["in_channels"] = 8
    unet = UNet2DConditionModel.from_config(config)
    state = sd_unet.state_dict()
    w = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat([w, torch.zeros_like(w)], 1)
    unet.load_state_dict(state)
    return unet


def train_ip2p(out: Path, seed: int, minutes: float, steps: int | None, init_dir: Path, batch: int = 32, lr: float = 4e-4, p_drop: float = 0.05, prediction: str = "v_prediction", terminal: bool = True, start: Path | None = None, checkpoint_minutes: float = CHECKPOINT_MINUTES, device: torch.device = torch.device("cpu")) -> None:
    """InstructPix2Pix training (Brooks et al. 2023, sec. 3.2) from the shapes-sd UNet.

    v prediction by default: with epsilon prediction the source latent c_I barely lowers the loss at high
    noise (eps ~ z_t there), so a short run learned the instruction but not to keep the source's layout;
    v ~ -z_0 at high noise makes copying c_I the first thing the UNet learns, provided the loss weighs
    those steps (`terminal`; min-SNR alone gives them about abar / (1 - abar), 0.005 at t = 999).
    `start` (a trained ip2p pipeline folder) makes the run a second stage that starts from its UNet."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline, UNet2DConditionModel

    sd = StableDiffusionPipeline.from_pretrained(init_dir, torch_dtype=torch.float32)
    vae = sd.vae.eval().requires_grad_(False).to(device)
    text_encoder = sd.text_encoder.eval().requires_grad_(False).to(device)  # shared with shapes-sd, frozen
    unet = (UNet2DConditionModel.from_pretrained(start / "unet", torch_dtype=torch.float32) if start
            else ip2p_unet_from(sd.unet))
    tokens = TokenCache(sd.tokenizer)
    with torch.no_grad():
        empty = text_encoder(tokens([""]).to(device))[0]

    def sample_batch(rng, n):
        return ip2p_training_batch(vae, text_encoder, tokens, empty, *triple_batch(rng, n), rng, p_drop)

    modules = dict(unet=unet)

    def build():
        return StableDiffusionInstructPix2PixPipeline(vae=vae, text_encoder=text_encoder, tokenizer=sd.tokenizer, unet=unet, scheduler=ddim_scheduler(prediction), safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    n_steps = diffusion_loop(out, "ip2p", modules, ["unet"], sample_batch, seed, minutes, steps, lr, batch, on_ckpt=lambda ema, step: _save_ema_snapshot(out, "pipeline-snapshot", modules, ema, build), prediction=prediction, terminal=terminal, checkpoint_minutes=checkpoint_minutes, device=device)
    vae.to("cpu"), text_encoder.to("cpu")
    save_pipeline(build(), out, "pipeline")
    log(out, kind="ip2p", saved=str(out / "pipeline"), steps=n_steps)


# ----------------------------------------------------------------------------- shapes-i2v

# An I2VGen-XL-shaped 3D UNet: four levels (16, 8, 4, 2 latent pixels) of two layers each, so that
# up_blocks[1..3] hold the three attentions (spatial and temporal) method i2v injects into.
I2V_UNET_CONFIG = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
                       block_out_channels=(32, 64, 64, 64), norm_num_groups=32, cross_attention_dim=64,
                       attention_head_dim=4)
I2V_IMAGE_SIZE = 32  # the CLIP image encoder's input: 32x32, 4x4 patches
I2V_FPS = 8
# How far movers travel per frame in the i2v training clips, in frame widths. The world's default
# (`world.SPEED`, 0.01-0.03) moves an object at most a fifth of the frame in 8 frames; a model trained on it learned to
# leave objects where the first frame has them, and the i2v check moves its square half the frame.
I2V_SPEED = (0.02, 0.09)
I2V_SHIFT = 0.25  # how far `--shift-first` moves each object of a conditioning first frame, at most, in frame widths


class ClipBatch(NamedTuple):
    frames: np.ndarray  # (B, F, H, W, 3) uint8, the clips
    captions: list[str]
    on_object: np.ndarray  # (B, F, H, W) bool, where objects are
    twins: np.ndarray  # (B, F, H, W, 3): the recoloured twin where `swapped`, else the clip itself
    swapped: np.ndarray  # (B,) bool
    firsts: np.ndarray  # (B, H, W, 3): the first frame to condition on (the clip's, or its displaced version)
    shifted: np.ndarray  # (B,) bool, which first frames are displaced


def clip_batch(rng: np.random.Generator, n: int, n_frames: int, speed: tuple[float, float] = I2V_SPEED,
               recolour: float = 0.0, shift_first: float = 0.0, twin_colours: str = "any") -> ClipBatch:
    """`n` random ShapesWorld clips of `n_frames` frames with their captions and object masks. Movers travel
    `speed` (low, high) frame widths per frame. With probability `recolour` a clip gets a twin, the same
    clip with every object in another colour (`recoloured`, its `palette` = `twin_colours`); with probability `shift_first` its
    conditioning first frame shows the objects displaced (`displaced`). Without either augmentation no
    random number is drawn for it, so runs without it keep their random stream."""
    specs = [world.random_clip(rng, n_frames=n_frames, speed=speed) for _ in range(n)]
    clips = [world.render_clip(s) for s in specs]
    swapped = rng.random(n) < recolour if recolour > 0 else np.zeros(n, bool)
    twins = [world.render_clip(recoloured(rng, s, twin_colours)).frames if w else c.frames for s, c, w in zip(specs, clips, swapped)]
    shifted = rng.random(n) < shift_first if shift_first > 0 else np.zeros(n, bool)
    firsts = [world.render_frame(displaced(rng, s), 0)[0] if m else c.frames[0] for s, c, m in zip(specs, clips, shifted)]
    return ClipBatch(np.stack([c.frames for c in clips]), [s.scene.caption for s in specs],
                     np.stack([c.masks.any(axis=1) for c in clips]), np.stack(twins), swapped, np.stack(firsts), shifted)


def displaced(rng: np.random.Generator, spec: world.ClipSpec, reach: float = I2V_SHIFT) -> world.ClipSpec:
    """The same clip with each object's starting place moved by up to `reach` frame widths in x and y (kept
    inside the frame): its frame 0 shows the objects as they look, not where the clip has them."""
    from dataclasses import replace

    def move(o: world.Obj) -> world.Obj:
        dx, dy = rng.uniform(-reach, reach, 2)
        inside = lambda c: float(np.clip(c, o.size, 1 - o.size))
        return replace(o, cx=inside(o.cx + dx), cy=inside(o.cy + dy))

    return world.with_objects(spec, move)


# Twin palettes of the recolour augmentation. Method i2v repaints warm-coloured objects worst: the inverted
# noise of a red, orange or yellow square pulls it back to its colour harder than an edited blue first frame
# pulls it to blue, while purple, white and green squares are carried blue (the shapes-i2v card). "warm-cool"
# therefore gives every twin the other side of that divide.
WARM, COOL = ("red", "orange", "yellow"), ("blue", "purple", "green", "white")
TWIN_COLOURS = ("any", "warm-cool")


def recoloured(rng: np.random.Generator, spec: world.ClipSpec, palette: str = "any") -> world.ClipSpec:
    """The same clip (scene, motions, background) with every object in another named colour: any other one
    (`palette` "any"), or with "warm-cool" a cool one (COOL) for a warm object (WARM) and a warm one for any
    other (a cool or black object)."""
    def other(colour: str) -> str:
        if palette == "warm-cool":
            return str(rng.choice(COOL if colour in WARM else WARM))
        return str(rng.choice([c for c in world.COLOURS if c != colour]))

    return world.repainted(spec, other)


# The recolour augmentation of `train_i2v` acts at t >= RECOLOUR_MIN_T only: there alpha_t / sigma_t <= 1 on
# I2VGen-XL's schedule, so the noise the input carries relative to z_0 stays within the scale of the noise itself.
RECOLOUR_MIN_T = 500


def twin_noise(abar: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, z0: torch.Tensor, z_twin: torch.Tensor,
               min_t: int = RECOLOUR_MIN_T) -> torch.Tensor:
    """e = n + (alpha_t / sigma_t)(z'_0 - z_0) for the samples with t >= `min_t`, n for the others:
    noising z_0 with e gives alpha_t z'_0 + sigma_t n, the twin's noisy latent, while the v target built
    from (z_0, e) still has z_0 as its x_0 estimate."""
    shape = (-1,) + (1,) * (z0.dim() - 1)
    snr_root = (abar[t] / (1 - abar[t])).sqrt().view(shape)
    return torch.where((t >= min_t).view(shape), noise + snr_root * (z_twin - z0), noise)


def implied_noise(abar: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """The e with x_t = alpha_t z_0 + sigma_t e, so that the v target built from (z_0, e) for input x_t
    implies x_0 = z_0 whatever x_t is (t >= 1, where sigma_t > 0)."""
    a = abar[t].view(-1, *([1] * (z0.dim() - 1)))
    return (x_t - a.sqrt() * z0) / (1 - a).sqrt()


@torch.no_grad()
def inverted_twin(v_fn, z_twin: torch.Tensor, steps: int, rng: np.random.Generator, p_top: float = 0.5,
                  min_t: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy inputs as method i2v meets them: each twin latent (B, C, F, h, w) is DDIM-inverted for `steps`
    steps by `v_fn(x, t, i)` (the model under the twin's own first frame, empty prompt, guidance 1), and
    one latent of its trajectory is kept: the last (the noise sampling starts from) with probability
    `p_top`, else one of the others at t >= `min_t`. Returns the latents and their timesteps (B,)."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    from videdit.diffusion import ddim_loop
    from videdit.tiny import I2V_SCHEDULER

    # trailing spacing, so that the trajectory ends at t = 999 as the method's 100-step inversion nearly does
    # (leading spacing would stop K steps at 1 + (K - 1) 1000 / K)
    inverse = DDIMInverseScheduler.from_config(DDIMScheduler(**I2V_SCHEDULER).config, timestep_spacing="trailing")
    inverse.set_timesteps(steps)
    kept = ddim_loop(v_fn, z_twin, inverse, inverse.timesteps, progress=False, keep=True)
    n = z_twin.shape[0]
    lower = [k for k in range(steps - 1) if inverse.timesteps[k] >= min_t]
    j = [steps - 1 if rng.random() < p_top or not lower else int(rng.choice(lower)) for _ in range(n)]
    x = torch.stack([kept[k + 1][b] for b, k in enumerate(j)])  # kept[k + 1] lies at inverse.timesteps[k]
    return x, inverse.timesteps[j].long()


def train_i2v(out: Path, seed: int, minutes: float, steps: int | None, init_dir: Path, batch: int = 4,
              n_frames: int | tuple[int, ...] = 8, lr: float = 5e-4, p_drop: float = 0.1, terminal: bool = True,
              object_weight: float = 4.0, speed: tuple[float, float] = I2V_SPEED, recolour: float = 0.0,
              recolour_min_t: int = RECOLOUR_MIN_T, start: Path | None = None, recolour_inverted: int = 0,
              shift_first: float = 0.0, keep_snapshots: bool = False, twin_colours: str = "any",
              checkpoint_minutes: float = CHECKPOINT_MINUTES, device: torch.device = torch.device("cpu")) -> None:
    """I2VGen-XL classes on ShapesWorld clips: VAE, tokenizer and text encoder of shapes-sd (frozen);
    a small CLIP image encoder and the 3D UNet trained jointly, with v-prediction on the zero-terminal-SNR
    schedule of I2VGen-XL and min-SNR weights with a floor at SNR = 0 (`min_snr_weight(terminal=True)`:
    a first run with w = min(SNR, 5) / (SNR + 1), which gives the terminal step no weight, learned the
    backgrounds in 90 minutes but not to copy even the first frame's objects). Clips have `n_frames` frames,
    or, given several lengths, a length drawn for each step. Objects cover a few
    latent pixels of a textured frame, so the loss weighs latent pixels that touch an object
    `1 + object_weight` times. Movers travel `speed` frame widths per frame (`I2V_SPEED`). Captions and
    image embeddings are dropped independently with probability `p_drop` for classifier-free guidance.

    Recolour augmentation (`recolour` > 0), for the use of method i2v, where sampling starts from the
    inverted noise of a clip whose first frame was edited: with probability `recolour`, a clip's noisy
    input at t >= RECOLOUR_MIN_T is made from its recoloured twin z'_0 (same motion, other object colours),

        x_t = alpha_t z'_0 + sigma_t n = alpha_t z_0 + sigma_t e,   e = n + (alpha_t / sigma_t) (z'_0 - z_0),

    and the target stays the clip itself, v = alpha_t e - sigma_t z_0 (whose x_0 estimate is z_0): where
    things are comes from the noisy input, what they look like from the first frame. Without it, a model
    given a blue first frame and the inverted noise of a red square draws two squares: a blue one left at
    its first-frame place and the red one, half recoloured, along the source's path. Measured, not yet of
    use: an 85-minute run with `recolour` 0.5 (1,790 steps) did worse on that check than the shipped
    model (the grass turned brown in every frame; its blue blob was 13.4 px off the path).
    `recolour_min_t` sets the smallest timestep the twins act at; `start` (a trained i2v pipeline folder)
    makes the run a second stage that starts from that pipeline's UNet and image encoder.

    With `recolour_inverted` K > 0 the twin's noisy input is instead what the method feeds the model: a
    latent of the twin's own K-step DDIM inversion (`inverted_twin`), made by the model being trained,
    conditioned on the twin's first frame; the condition and the target stay the clip's. Gaussian
    noise around a recoloured clip is not what DDIM inversion gives, and the model has to learn to read
    where things are, not what colour they are, from the latter. Measured, not yet of use: as a second
    stage from shapes-i2v (`--recolour 0.5 --recolour-inverted 6`, 315 steps in 50 minutes, then 73
    more at `--recolour 0.75`), the check's blue blob still stays at the first frame's place (16-17 px
    off the path; the shapes-i2v card has the numbers).

    With `shift_first` P > 0, a share P of the clips is conditioned on a first frame whose objects stand
    elsewhere (`displaced`, up to I2V_SHIFT frame widths away) while the target is the clip itself: the first
    frame then says what the objects look like and the noisy input where they are. Every earlier variant
    drew a static copy of an edited first frame's object at its first-frame place, because the first frame
    always showed where the objects of frame 0 are and the model learned to keep them there."""
    from diffusers import DDIMScheduler, DDPMScheduler, I2VGenXLUNet, StableDiffusionPipeline
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from videdit.i2v import save_i2v
    from videdit.metrics import image_processor_class
    from videdit.tiny import I2V_SCHEDULER

    sd = StableDiffusionPipeline.from_pretrained(init_dir, torch_dtype=torch.float32)
    vae = sd.vae.eval().requires_grad_(False)
    text_encoder = sd.text_encoder.eval().requires_grad_(False)
    tokens = TokenCache(sd.tokenizer)
    torch.manual_seed(seed)
    dim = I2V_UNET_CONFIG["cross_attention_dim"]
    if start:  # a second stage: the UNet and image encoder of a trained i2v pipeline
        unet = I2VGenXLUNet.from_pretrained(start / "unet", torch_dtype=torch.float32)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(start / "image_encoder", torch_dtype=torch.float32)
    else:
        unet = I2VGenXLUNet(**I2V_UNET_CONFIG)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=dim, intermediate_size=4 * dim, num_hidden_layers=2, num_attention_heads=4,
            image_size=I2V_IMAGE_SIZE, patch_size=4, projection_dim=dim))
    processor = image_processor_class()(size={"shortest_edge": I2V_IMAGE_SIZE},
                                        crop_size={"height": I2V_IMAGE_SIZE, "width": I2V_IMAGE_SIZE})
    for m in (vae, text_encoder, unet, image_encoder):
        m.to(device)
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1).to(device)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1).to(device)
    scale = vae.config.scaling_factor
    sched = DDPMScheduler(**{k: v for k, v in I2V_SCHEDULER.items() if k not in ("set_alpha_to_one", "steps_offset")})
    abar = sched.alphas_cumprod.to(device)
    fps = lambda n: torch.full((n,), I2V_FPS, device=device)
    on_device = lambda a: torch.from_numpy(a).to(device)  # numpy draws, made on the CPU

    def text_states(ids):
        # as `videdit.i2v.encode_prompt`: the penultimate layer after the final layer norm
        with torch.no_grad():
            hidden = text_encoder(ids.to(device), output_hidden_states=True).hidden_states[-2]
            return getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)

    def sample(rng, n, n_frames):
        clips, captions, on_object, twins, swapped, firsts, shifted = clip_batch(rng, n, n_frames, speed, recolour,
                                                                                 shift_first, twin_colours)
        captions = ["" if rng.random() < p_drop else c for c in captions]
        with torch.no_grad():
            frames = to_tensor(clips.reshape(-1, *clips.shape[2:])).to(device)
            post = vae.encode(frames).latent_dist
            video = lambda z: z.view(n, n_frames, *z.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
            z0 = video(posterior_sample(post, rng) * scale)
            z_twin, twin_video = z0, None
            if swapped.any():  # the recoloured twins' latents where there are twins, z_0 elsewhere
                k = int(swapped.sum())
                twin_post = vae.encode(to_tensor(twins[swapped].reshape(-1, *twins.shape[2:])).to(device)).latent_dist
                # an inverted twin starts, as the method's inversion does, from the posterior mean
                twin = (twin_post.mean if recolour_inverted else posterior_sample(twin_post, rng)) * scale
                twin_video = twin.view(k, n_frames, *twin.shape[1:]).permute(0, 2, 1, 3, 4)
                z_twin = z0.clone()
                z_twin[on_device(swapped)] = twin_video
            positions = torch.arange(1, n_frames, device=device).float().div(n_frames - 1).view(1, 1, -1, 1, 1)
            with_positions = lambda first: torch.cat([first, positions.expand(len(first), first.shape[1], -1, *first.shape[-2:])], 2)
            # the first frame's latent, as `videdit.i2v.image_latents`; displaced first frames encoded on their own
            first_latents = video(post.mean * scale)[:, :, :1]
            first_pixels = frames.view(n, n_frames, *frames.shape[1:])[:, 0]
            if shifted.any():
                moved, displaced_pixels = on_device(shifted), to_tensor(firsts[shifted]).to(device)
                first_pixels, first_latents = first_pixels.clone(), first_latents.clone()
                first_pixels[moved] = displaced_pixels
                first_latents[moved] = (vae.encode(displaced_pixels).latent_dist.mean * scale)[:, :, None]
            image_latents = with_positions(first_latents)
        to_pixels = lambda first: ((F.interpolate(first, size=I2V_IMAGE_SIZE, mode="bilinear", antialias=True,
                                                  align_corners=False) + 1) / 2 - mean) / std
        pixels = to_pixels(first_pixels)
        twin_condition = None
        if recolour_inverted and swapped.any():  # the twins' own first frames (posterior means), for their inversion
            twin_condition = (with_positions(twin_video[:, :, :1]), to_pixels(to_tensor(twins[swapped][:, 0]).to(device)),
                              on_device(swapped))
        keep_image = on_device(rng.random(n) >= p_drop).float().view(n, 1, 1)
        f = clips.shape[2] // z0.shape[-1]  # the VAE's downsampling factor
        touched = F.max_pool2d(on_device(on_object).float().flatten(0, 1)[:, None], f)
        pixel_weight = 1 + object_weight * touched.view(n, n_frames, 1, *z0.shape[-2:]).permute(0, 2, 1, 3, 4)
        return z0, z_twin, image_latents, tokens(captions), pixels, keep_image, pixel_weight, twin_condition

    params = list(unet.parameters()) + list(image_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    trainable = dict(unet=unet, image_encoder=image_encoder)
    ema = {n: {k: v.detach().clone() for k, v in m.named_parameters()} for n, m in trainable.items()}
    step, elapsed, rng = 0, 0.0, np.random.default_rng(seed)
    ck = load_ckpt(out, device)
    if ck:
        for n, m in trainable.items():
            m.load_state_dict(ck["models"][n])
        opt.load_state_dict(ck["opt"])
        ema, step, elapsed, rng = ck["ema"], ck["step"], ck["elapsed"], ck["rng"]
    gen = torch.Generator().manual_seed(seed + step)
    budget = Budget(minutes, steps, elapsed, checkpoint_minutes)

    def checkpoint():
        save_ckpt(out, dict(models={n: m.state_dict() for n, m in trainable.items()}, ema=ema, opt=opt.state_dict(),
                            step=step, elapsed=budget.elapsed, rng=rng))

    def write(name: str, dtype=None):
        _save_ema_snapshot(out, name, trainable, ema, save=lambda folder: save_i2v(
            folder, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=sd.tokenizer, image_encoder=image_encoder,
            processor=processor, scheduler=DDIMScheduler(**I2V_SCHEDULER), dtype=dtype))

    unet.train(), image_encoder.train()
    running = []
    lengths = sorted({n_frames} if isinstance(n_frames, int) else set(n_frames))  # each length once: drawn equally often
    while not budget.done(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, budget.frac(step), lr)
        length = lengths[0] if len(lengths) == 1 else int(rng.choice(lengths))  # one draw only when there is a choice
        z0, z_twin, image_latents, ids, pixels, keep_image, pixel_weight, twin_condition = sample(rng, batch, length)
        noise = randn(z0.shape, gen, device)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=gen).to(device)
        if recolour > 0 and not recolour_inverted:
            noise = twin_noise(abar, t, noise, z0, z_twin, recolour_min_t)
        zt = sched.add_noise(z0, noise, t)
        if twin_condition is not None:  # the swapped clips' inputs: their twins' inverted latents
            latents_tw, pixels_tw, swapped = twin_condition
            k = int(swapped.sum())
            with torch.no_grad():
                embedding_tw = image_encoder(pixel_values=pixels_tw).image_embeds[:, None]
                empty = text_states(tokens([""] * k))
            v_fn = lambda x, tt, i: unet(x, tt, fps=fps(k), image_latents=latents_tw,
                                         image_embeddings=embedding_tw, encoder_hidden_states=empty).sample
            x_tw, t_tw = inverted_twin(v_fn, z_twin[swapped], recolour_inverted, rng, min_t=recolour_min_t)
            t_tw = t_tw.to(device)
            zt[swapped], t[swapped] = x_tw, t_tw
            noise[swapped] = implied_noise(abar, t_tw, x_tw, z0[swapped])  # so the target's x_0 is the clip
        image_embedding = image_encoder(pixel_values=pixels).image_embeds[:, None] * keep_image
        pred = unet(zt, t, fps=fps(batch), image_latents=image_latents,
                    image_embeddings=image_embedding, encoder_hidden_states=text_states(ids)).sample
        weight = min_snr_weight(abar, t, prediction="v_prediction", terminal=terminal)
        per_sample = (pixel_weight * F.mse_loss(pred, v_target(abar, t, z0, noise), reduction="none")).mean(dim=(1, 2, 3, 4))
        loss = (weight * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for n, m in trainable.items():
            ema_update(ema[n], m, step)
        step += 1
        running.append(loss.detach())  # read back only when logged (see diffusion_loop)
        if step % 25 == 0:
            log(out, kind="i2v", step=step, s=round(budget.elapsed), loss=round(torch.stack(running).mean().item(), 4), lr=opt.param_groups[0]["lr"])
            running = []
        if budget.checkpoint_due():
            checkpoint()
            write("pipeline-snapshot")
            if keep_snapshots:  # numbered copies, to choose among afterwards
                write(f"snapshot-{step:06d}", dtype=torch.float16)
    checkpoint()
    for m in (vae, text_encoder, unet, image_encoder):
        m.eval().to("cpu")
    write("pipeline")
    write("pipeline-fp16", dtype=torch.float16)
    log(out, kind="i2v", done=True, step=step, minutes=round(budget.elapsed / 60, 1), saved=str(out / "pipeline"))


# ----------------------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m videdit.shapes.train", description="Train a ShapesWorld model (CPU or GPU).")
    ap.add_argument("kind", choices=["vae", "sd", "ip2p", "i2v", "t2v"])
    ap.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, log.jsonl, and the result: vae/ or pipeline/ + pipeline-fp16/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-time budget of this run")
    ap.add_argument("--steps", type=int, default=None, help="optional step budget (whichever comes first)")
    ap.add_argument("--batch", type=int, default=None, help="default: 16 crops for vae, 32 for sd and ip2p")
    ap.add_argument("--vae", type=Path, help="sd: folder of the trained AutoencoderKL (RUN/vae)")
    ap.add_argument("--init", type=Path, help="ip2p: shapes-sd pipeline folder to start from; i2v: shapes-sd pipeline whose VAE and text encoder it uses; vae: a trained vae/ folder whose decoder is then tuned on whole frames")
    ap.add_argument("--prediction", choices=["epsilon", "v_prediction"], default="v_prediction", help="ip2p: what the UNet predicts")
    ap.add_argument("--weighting", choices=["min-snr", "terminal"], default="terminal",
                    help="ip2p, i2v: loss weights of v prediction: min-SNR, or min-SNR with weight kept at SNR = 0 "
                         "(see min_snr_weight; shapes-ip2p v1 was trained with min-snr)")
    ap.add_argument("--speed", type=float, nargs=2, default=I2V_SPEED, metavar=("LOW", "HIGH"),
                    help="i2v: how far movers travel per frame, in frame widths (default %(default)s)")
    ap.add_argument("--recolour", type=float, default=0.0, metavar="P",
                    help="i2v: probability that a clip's noisy input (at t >= --recolour-min-t) comes from its "
                         "recoloured twin (see train_i2v)")
    ap.add_argument("--recolour-min-t", type=int, default=RECOLOUR_MIN_T, metavar="T",
                    help="i2v: the smallest timestep at which --recolour acts; with --recolour-inverted, the smallest "
                         "below the last inverted latent that is kept (default %(default)s)")
    ap.add_argument("--from", dest="start", type=Path, metavar="DIR",
                    help="ip2p, i2v: a second stage: start the trained parts (ip2p: the UNet; i2v: the UNet and image "
                         "encoder) from this pipeline folder of the same kind")
    ap.add_argument("--recolour-inverted", type=int, default=0, metavar="K",
                    help="i2v: the --recolour twins' inputs are latents of their own K-step DDIM inversion (see train_i2v)")
    ap.add_argument("--frames", type=int, nargs="+", default=None, metavar="N",
                    help="i2v: frames per training clip; given several, each step draws one of them (default 8)")
    ap.add_argument("--twin-colours", choices=TWIN_COLOURS, default="any",
                    help="i2v: the colours of the --recolour twins: any other colour (default), or warm-cool: a cool "
                         "one for a red, orange or yellow object and a warm one for any other (see recoloured)")
    ap.add_argument("--shift-first", type=float, default=0.0, metavar="P",
                    help="i2v: probability that a clip's conditioning first frame shows its objects displaced (see "
                         "train_i2v)")
    ap.add_argument("--lr", type=float, default=None, help="ip2p, i2v: peak learning rate (default 4e-4 for ip2p, 5e-4 for i2v)")
    ap.add_argument("--checkpoint-minutes", type=float, default=CHECKPOINT_MINUTES, metavar="M",
                    help="write the resumable checkpoint every M minutes, and for sd, ip2p and i2v the EMA snapshot "
                         "(default %(default)s)")
    ap.add_argument("--keep-snapshots", action="store_true",
                    help="i2v: also keep each EMA snapshot, in fp16, as OUT/snapshot-STEP (to choose among afterwards)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default %(default)s)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default; the shipped models' recipe), cuda, cuda:N, or auto (a GPU where there is one); "
                         "the data and every random draw stay on the CPU, so a seed draws the same run on either")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        device = resolve_device(a.device)
    except (ValueError, RuntimeError) as exc:
        ap.error(str(exc))
    if a.kind != "i2v" and (a.recolour or a.recolour_inverted or a.shift_first or a.keep_snapshots
                            or a.twin_colours != "any" or a.frames):
        ap.error("--frames, --recolour, --recolour-inverted, --twin-colours, --shift-first and --keep-snapshots are "
                 "options of i2v")
    if a.checkpoint_minutes <= 0:
        ap.error("--checkpoint-minutes must be positive")
    if a.start and a.kind not in ("ip2p", "i2v"):
        ap.error("--from is an option of ip2p and i2v")
    if a.lr is not None and a.kind not in ("ip2p", "i2v", "t2v"):
        ap.error("--lr is an option of ip2p, i2v and t2v")
    if a.start and not (a.start / "unet").is_dir():
        ap.error(f"--from {a.start}: no unet/ folder there (expected a pipeline folder of the same kind)")
    frames = tuple(a.frames or [8])
    if min(frames) < 2:
        ap.error("--frames: a clip needs at least 2 frames (the first one is the condition)")
    if a.twin_colours != "any" and not a.recolour:
        ap.error("--twin-colours needs --recolour P (the share of clips that get a twin)")
    if a.recolour_inverted and not a.recolour:
        ap.error("--recolour-inverted K needs --recolour P (the share of clips that get an inverted twin)")
    if a.seed >= HELD_OUT_SEED:
        ap.error(f"--seed must be below {HELD_OUT_SEED} (that stream is held out for evaluation)")
    a.out.mkdir(parents=True, exist_ok=True)
    run = dict(checkpoint_minutes=a.checkpoint_minutes, device=device)  # options of every kind
    if a.kind == "vae":
        if a.init:  # decoder-only second stage on whole frames
            train_vae(a.out, a.seed, a.minutes, a.steps, batch=a.batch or 8, lr=5e-4, init=a.init, **run)
        else:
            train_vae(a.out, a.seed, a.minutes, a.steps, batch=a.batch or 16, **run)
    elif a.kind == "sd":
        if not a.vae:
            ap.error("sd needs --vae DIR (the vae/ folder written by the vae run)")
        train_sd(a.out, a.seed, a.minutes, a.steps, a.vae, batch=a.batch or 32, **run)
    elif a.kind == "t2v":  # shapes-t2v, the base of videdit generate (videdit.generate.train)
        from videdit.generate.train import train_t2v

        if not a.init:
            ap.error("t2v needs --init DIR (the shapes-sd pipeline folder: its VAE and text encoder)")
        train_t2v(a.out, a.seed, a.minutes, a.steps, a.init, batch=a.batch or 4, **run,
                  **({} if a.lr is None else dict(lr=a.lr)))
    elif a.kind == "i2v":
        if not a.init:
            ap.error("i2v needs --init DIR (the shapes-sd pipeline folder: its VAE and text encoder)")
        train_i2v(a.out, a.seed, a.minutes, a.steps, a.init, batch=a.batch or 4, terminal=a.weighting == "terminal",
                  speed=tuple(a.speed), recolour=a.recolour, recolour_min_t=a.recolour_min_t, start=a.start,
                  recolour_inverted=a.recolour_inverted, shift_first=a.shift_first, keep_snapshots=a.keep_snapshots,
                  twin_colours=a.twin_colours, n_frames=frames, **run,
                  **({} if a.lr is None else dict(lr=a.lr)))
    else:
        if not a.init:
            ap.error("ip2p needs --init DIR (the shapes-sd pipeline folder)")
        train_ip2p(a.out, a.seed, a.minutes, a.steps, a.init, batch=a.batch or 32, prediction=a.prediction,
                   terminal=a.weighting == "terminal", start=a.start, **run,
                   **({} if a.lr is None else dict(lr=a.lr)))


if __name__ == "__main__":
    main()
