"""Generative model families: shapes, spectral norm, EMA arithmetic, conditioning, input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepkit import create_model
from deepkit.errors import ConfigError, ShapeError


@pytest.mark.parametrize("name", ["autoencoder", "conv_autoencoder"])
def test_autoencoders_round_trip_shapes(name):
    model = create_model(name, input_size=[16, 12], latent_dim=3)
    x = torch.rand(5, 1, 16, 12)
    z = model.encode(x)
    assert z.shape == (5, 3) and model.decode(z).shape == x.shape and model(x).shape == x.shape


def test_vae_encoder_gives_mean_and_logvar_and_samples_lie_in_unit_interval():
    model = create_model("conv_vae", latent_dim=6)
    mu, logvar = model.encode(torch.rand(3, 1, 28, 28))
    assert mu.shape == logvar.shape == (3, 6)
    s = model.sample(10, generator=torch.Generator().manual_seed(0))
    assert s.shape == (10, 1, 28, 28) and float(s.min()) >= 0 and float(s.max()) <= 1


def test_reparameterized_sample_has_the_encoder_statistics():
    torch.manual_seed(0)
    model = create_model("vae", input_size=[4, 4], hidden=[8], latent_dim=2)
    with torch.no_grad():
        model.encoder[-1].weight.zero_()
        model.encoder[-1].bias.copy_(torch.tensor([1.0, -2.0, 0.0, 2 * torch.log(torch.tensor(3.0))]))
    zs = []
    model.decoder.register_forward_hook(lambda m, args, out: zs.append(args[0]))
    model(torch.rand(20000, 1, 4, 4))
    z = zs[0]
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.06, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 3.0]), atol=0.06, rtol=0)


def test_conv_autoencoder_rejects_sizes_its_strides_cannot_halve():
    with pytest.raises(ShapeError, match="divisible by 4"):
        create_model("conv_autoencoder", input_size=[10, 10])
    model = create_model("autoencoder")
    with pytest.raises(ShapeError, match=r"1×28×28"):
        model.check_input((3, 28, 28))


def test_dcgan_shapes_conditioning_and_checks():
    model = create_model("cdcgan", latent_dim=16, g_width=8, d_width=8)
    z = torch.randn(4, 16)
    labels = torch.tensor([0, 1, 2, 3])
    img = model.generator(z, labels).detach()
    assert img.shape == (4, 1, 28, 28) and float(img.abs().max()) <= 1  # tanh range
    assert model.discriminator(img, labels).shape == (4,)
    assert model.default_labels(12, "cpu").tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    model.generator.eval()
    other = model.generator(z, torch.tensor([5, 5, 5, 5]))
    assert not torch.allclose(model.generator(z, labels), other)
    assert create_model("dcgan").default_labels(3, "cpu") is None
    with pytest.raises(ConfigError, match="divisible by 4"):
        create_model("dcgan", image_size=30)
    with pytest.raises(ShapeError, match=r"\(1, 28, 28\)"):
        model.check_input((1, 32, 32))


def test_spectral_norm_wraps_every_discriminator_layer():
    plain = create_model("dcgan", g_width=8, d_width=8)
    sn = create_model("cdcgan", g_width=8, d_width=8, spectral_norm=True)
    layers = [m for m in sn.discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.Embedding)]
    assert len(layers) == 4 and all(hasattr(m, "parametrizations") for m in layers)
    assert not any(hasattr(m, "parametrizations") for m in plain.discriminator.modules())
    conv = sn.discriminator.features[0]
    for _ in range(20):  # power iterations run in training forwards
        sn.discriminator(torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert float(sigma) == pytest.approx(1.0, abs=0.05)


def test_ema_update_is_the_exponential_average():
    model = create_model("dcgan", latent_dim=4, g_width=4, d_width=4)
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    ema0 = {k: v.clone() for k, v in model.generator_ema.state_dict().items()}
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(1.0)
        model.generator.project[2].running_mean.fill_(7.0)
    model.update_ema(0.9)
    new, gen = model.generator_ema.state_dict(), model.generator.state_dict()
    torch.testing.assert_close(new["project.0.weight"], 0.9 * ema0["project.0.weight"] + 0.1 * gen["project.0.weight"])
    assert torch.equal(new["project.2.running_mean"], gen["project.2.running_mean"])  # buffers are copied


def test_standing_stats_are_the_ema_generators_own_and_leave_the_rng_alone():
    model = create_model("cdcgan", latent_dim=8, g_width=4, d_width=4)
    with torch.no_grad():
        for p in model.generator_ema.parameters():
            p.mul_(2.0)  # EMA weights that differ from the raw generator's
    state = torch.get_rng_state()
    model.refresh_ema_stats(batches=4, batch_size=64)
    assert torch.equal(state, torch.get_rng_state())
    g, rng, feats = model.generator_ema, torch.Generator().manual_seed(0), []
    with torch.no_grad():
        for _ in range(4):  # the same draws: mean of the pre-norm activations of the EMA generator itself
            z, labels = torch.randn(64, 8, generator=rng), torch.randint(0, 10, (64,), generator=rng)
            feats.append(g.project[:2](torch.cat([z, g.embed(labels)], 1)))
    torch.testing.assert_close(g.project[2].running_mean, torch.cat(feats).mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    assert g.project[2].momentum == 0.1  # restored
