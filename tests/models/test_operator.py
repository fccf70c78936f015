import torch
from conftest import latent_operator


def test_shapes_and_identity_at_initialization():
    model = latent_operator()
    u = torch.randn(3, 1, 256)
    out = model(u, torch.zeros(3, 1), torch.full((3,), 0.05))
    assert out.shape == (3, 1, 256)
    assert torch.allclose(out, u)  # zero-initialized head: starts as persistence
    assert model.rollout(u, torch.zeros(3, 1), torch.full((3,), 0.05), 4).shape == (3, 4, 1, 256)


def test_conditioning_changes_the_output_once_trained_a_little():
    torch.manual_seed(0)
    model = latent_operator(latent_dim=16, num_layers=1, num_modes=4, cond_dim=8, decoder_dim=8)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    u = torch.randn(2, 1, 256)
    a = model(u, torch.zeros(2, 1), torch.full((2,), 0.05))
    b = model(u, torch.ones(2, 1), torch.full((2,), 0.05))
    assert not torch.allclose(a, b)


def test_normalization_travels_in_state_dict():
    model = latent_operator()
    model.set_normalization(torch.tensor([0.5]), torch.tensor([2.0]))
    sd = model.state_dict()
    assert sd["field_mean"].item() == 0.5 and sd["field_std"].item() == 2.0
