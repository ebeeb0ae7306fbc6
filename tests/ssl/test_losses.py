import math

import torch

from selfnas.ssl.losses import info_nce, negative_cosine_similarity, nt_xent


def test_negative_cosine_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    # cos = 1/sqrt(2) and -1 -> mean -(0.7071 - 1) / 2
    expected = -(1 / math.sqrt(2) - 1.0) / 2
    assert math.isclose(float(negative_cosine_similarity(p, z)), expected, rel_tol=1e-6)


def test_negative_cosine_stops_gradient_into_target():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    negative_cosine_similarity(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_nt_xent_hand_computed_two_pairs():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    # anchor 0 (z1[0]): positive z2[0] sim 1; negatives z1[1] sim 0, z2[1] sim 0
    per_anchor = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0.0)))
    assert math.isclose(float(nt_xent(z1, z2, t)), per_anchor, rel_tol=1e-5)


def test_nt_xent_lower_for_aligned_views():
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    aligned = nt_xent(z, z + 0.01 * torch.randn(16, 8))
    shuffled = nt_xent(z, torch.randn(16, 8))
    assert aligned < shuffled


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    t = 0.2
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0) + math.exp(-1 / t)))
    assert math.isclose(float(info_nce(q, k, queue, t)), expected, rel_tol=1e-5)
