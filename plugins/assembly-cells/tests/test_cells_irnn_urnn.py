"""IRNN initialisation (Le et al. 2015) and the uRNN's unitarity (Arjovsky et al. 2015)."""

from __future__ import annotations

import torch
from cells_support import build, randomise

from assembly_cells import UrnnSpec
from assembly_cells.specs import urnn_parameters

# -- IRNN ------------------------------------------------------------------------------------

def test_irnn_initialisation_is_the_papers() -> None:
    for scale in (1.0, 0.5):
        layer = build("irnn", 300, 200, dtype=torch.float32, scale=scale)
        assert torch.equal(layer.weight_hh, torch.eye(200) * scale)  # exactly scale · I
        assert torch.equal(layer.bias, torch.zeros(200))
        std = layer.weight_ih.std().item()
        assert abs(std - 0.001) < 0.00005, std  # 60,000 draws: std within 5 %
        assert abs(layer.weight_ih.mean().item()) < 0.00005


def test_irnn_with_identity_recurrence_integrates_its_input() -> None:
    """At init (W_h = I, b = 0) a non-negative input is summed over time, exactly."""
    layer = build("irnn", 4, 4, bias=False)
    with torch.no_grad():
        layer.weight_ih.copy_(torch.eye(4, dtype=torch.float64))
    x = torch.rand(1, 7, 4, dtype=torch.float64)
    out, (h,) = layer(x, torch.tensor([7]))
    torch.testing.assert_close(out[0], x[0].cumsum(0))
    torch.testing.assert_close(h[0], x[0].sum(0))


def test_irnn_other_inits_follow_the_core_rules() -> None:
    layer = build("irnn", 3, 5, dtype=torch.float32, init="identity", init_scale=0.25)
    assert torch.equal(layer.weight_hh, torch.eye(5) * 0.25)
    layer = build("irnn", 3, 5, dtype=torch.float64, init="orthogonal")
    torch.testing.assert_close(layer.weight_hh @ layer.weight_hh.T,
                               torch.eye(5, dtype=torch.float64), atol=1e-6, rtol=0)


# -- uRNN ------------------------------------------------------------------------------------

def random_complex(rows: int, n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(rows, n, 2, generator=generator, dtype=torch.float64)
    return torch.view_as_complex(real).to(dtype)


def test_urnn_recurrent_map_preserves_norm() -> None:
    layer = build("urnn", 3, 16, dtype=torch.float32)
    h = random_complex(32, 16, seed=1, dtype=torch.complex64)
    with torch.no_grad():
        mapped = layer.unitary(h)  # structured form
        norms = h.abs().pow(2).sum(1).sqrt()
        torch.testing.assert_close(mapped.abs().pow(2).sum(1).sqrt(), norms, rtol=1e-5, atol=0)
        real = torch.cat([h.real, h.imag], dim=1)  # (B, 2N)
        materialised = real @ layer.recurrent_matrix()  # the form the loop uses
        torch.testing.assert_close(materialised.norm(dim=1), norms, rtol=1e-5, atol=0)
        torch.testing.assert_close(materialised, torch.cat([mapped.real, mapped.imag], 1),
                                   rtol=1e-5, atol=1e-5)


def unitarity_error(layer: torch.nn.Module) -> float:
    """max |Mᵀ M − I| of the real recurrent matrix (orthogonal ⇔ W unitary)."""
    with torch.no_grad():
        m = layer.recurrent_matrix().double()
        return (m.T @ m - torch.eye(m.shape[0], dtype=torch.float64)).abs().max().item()


def test_urnn_stays_unitary_after_training_steps() -> None:
    layer = build("urnn", 3, 12, dtype=torch.float32)
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 10, 3, generator=generator)
    target = torch.randn(8, 10, 24, generator=generator)
    before = layer.recurrent_matrix().detach().clone()
    for _ in range(10):
        optimiser.zero_grad()
        out, _ = layer(x, torch.full((8,), 10))
        ((out - target) ** 2).mean().backward()
        optimiser.step()
    assert (layer.recurrent_matrix().detach() - before).abs().max() > 1e-2  # it did move
    assert unitarity_error(layer) < 1e-5
    h = random_complex(16, 12, seed=2, dtype=torch.complex64)
    with torch.no_grad():
        torch.testing.assert_close(layer.unitary(h).abs().pow(2).sum(1),
                                   h.abs().pow(2).sum(1), rtol=1e-5, atol=0)


def test_urnn_has_exactly_7n_recurrent_parameters() -> None:
    for n in (4, 9, 16):
        layer = build("urnn", 5, n, dtype=torch.float32)
        recurrent = {name: p.numel() for name, p in layer.named_parameters()
                     if name in ("phases", "reflections")}
        assert sum(recurrent.values()) == 7 * n
        others = {name for name, _ in layer.named_parameters()} - set(recurrent)
        assert others == {"weight_ih", "bias_ih", "modrelu_bias"}
        assert urnn_parameters(UrnnSpec(), 5, n) == 7 * n + 2 * n * 5 + 3 * n
        assert urnn_parameters(UrnnSpec(bias=False), 5, n) == 7 * n + 2 * n * 5


def test_urnn_permutation_is_a_saved_fixed_buffer() -> None:
    layer = build("urnn", 2, 10, dtype=torch.float32)
    assert sorted(layer.permutation.tolist()) == list(range(10))
    assert "permutation" in layer.state_dict()
    assert "permutation" not in dict(layer.named_parameters())


def test_urnn_without_bias_is_the_linear_unitary_rnn() -> None:
    """``bias = false``: no c, no modReLU bias, and h' = W h + V x exactly."""
    layer = build("urnn", 3, 6, bias=False)
    randomise(layer)
    x = torch.randn(2, 1, 3, dtype=torch.float64)
    h = torch.randn(2, 12, dtype=torch.float64)
    with torch.no_grad():
        out, _ = layer(x, torch.tensor([1, 1]), (h,))
        expected = h @ layer.recurrent_matrix() + x[:, 0] @ layer.weight_ih.T
    torch.testing.assert_close(out[:, 0], expected)


def test_modrelu_zeroes_small_moduli_and_keeps_phase() -> None:
    layer = build("urnn", 1, 3)
    with torch.no_grad():
        layer.modrelu_bias.copy_(torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64))
        z = torch.tensor([[0.3, 1.0, -0.6, 0.4, 0.0, 0.8]], dtype=torch.float64)  # re | im
        zero_state = torch.zeros(1, 6, dtype=torch.float64)
        out, _ = layer.recur(z, (zero_state,), layer.prepare())
    modulus = torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64)
    expected_modulus = torch.clamp(modulus + layer.modrelu_bias.detach(), min=0.0)
    got = torch.complex(out[0, :3], out[0, 3:])
    torch.testing.assert_close(got.abs(), expected_modulus)
    given = torch.complex(z[0, :3], z[0, 3:])
    torch.testing.assert_close(got[1:] / got[1:].abs(), given[1:] / given[1:].abs())
