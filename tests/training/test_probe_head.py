"""LP-FT: the fine-tuning head starts at the linear probe, standardisation folded into it."""

import torch
from torch import nn

from selfnas.data.types import DatasetSplits, ImageSet
from selfnas.eval.linear import predict, standardize, train_logreg
from selfnas.training.probe_head import fold_standardisation, init_head_from_probe


def test_folding_the_standardisation_gives_the_probes_logits():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 6, generator=g) * torch.tensor([1.0, 5.0, 0.1, 2.0, 3.0, 0.5]) + 4.0
    labels = torch.randint(0, 3, (200,), generator=g)
    mean, std = feats.mean(0), feats.std(0, correction=0)
    weight, bias = train_logreg((feats - mean) / std, labels, 3, 1e-3)
    w, b = fold_standardisation(weight, bias, mean, std)
    assert w.shape == (3, 6) and b.shape == (3,)
    expected = ((feats - mean) / std) @ weight + bias
    torch.testing.assert_close(feats @ w.T + b, expected, atol=1e-4, rtol=1e-4)


def _splits(n: int = 240) -> DatasetSplits:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 60, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    images[:, :, :4] += (labels * 60).to(torch.uint8)[:, None, None, None]  # the class shows in the top rows
    train = ImageSet(images[: n // 2], labels[: n // 2])
    val = ImageSet(images[n // 2 :], labels[n // 2 :])
    return DatasetSplits("toy", train, val, None, (0.5,), (0.25,))


def test_the_head_starts_with_the_probes_predictions_and_accuracy():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    head = nn.Linear(16, 3)
    data = _splits()

    def normalize(x):
        return (x.float() / 255 - 0.5) / 0.25

    start = init_head_from_probe(backbone, head, data, normalize, torch.device("cpu"))
    with torch.no_grad():
        train_f, val_f = backbone(normalize(data.train.images)), backbone(normalize(data.val.images))
        ours = (head(val_f).argmax(1) == data.val.labels).float().mean().item()
        fit_x, eval_x = standardize(train_f, val_f)
        weight, bias = train_logreg(fit_x, data.train.labels, 3, start["probe_weight_decay"])
    probe = (predict(weight, bias, eval_x) == data.val.labels).float().mean().item()
    assert start["probe_val"] == probe == ours and ours > 0.9
