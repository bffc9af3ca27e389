"""A small scan classifier: the fidelity judge's network, and the perceptual critic of decoder fine-tuning.

Four stride-2 stages (16-32-64-128 channels at width 16) of conv-BN-ReLU pairs, global average and max
pools, linear. Built for focal findings: each view enters twice, as is and as its local contrast (the image
minus its 5x5 mean, x4), and the last feature map is pooled by its mean *and* its maximum, so that one hot
spot is not averaged away over the whole body. On phantom data (aurora-dpd, 2,221 training scans, 256x64)
this lifted the judge's held-out accuracy from 0.65 (plain input, average pool, 10 epochs) to 0.84
(15 epochs, count-thinning augmentation): benchmarks/RESULTS.md.

Inputs are network intensities y (synthscan/preprocess.py ``to_network``), so a decoder's output can be
fed to it directly and differentiably.
"""

from __future__ import annotations

import torch
from torch import nn


class ScanClassifier(nn.Module):
    def __init__(self, views: int = 2, width: int = 16, classes: int = 3):
        super().__init__()
        layers, channels = [], 2 * views
        for stage in range(4):
            out = width * 2 ** stage
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, classes)
        self.config = {"views": views, "width": width, "classes": classes}

    def stage_maps(self, x) -> list[torch.Tensor]:
        """Activation map after each of the four stages (the perceptual features)."""
        local_contrast = x - nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
        h, maps = torch.cat([x, 4 * local_contrast], dim=1), []
        for start in range(0, len(self.body), 6):
            h = self.body[start:start + 6](h)
            maps.append(h)
        return maps

    def features(self, x):
        h = self.stage_maps(x)[-1]
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, x):
        return self.head(self.features(x))
