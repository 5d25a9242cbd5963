"""Random-weight face models of antelopev2's sizes, for timing face analysis without the real files.

The benchmark cannot ship insightface's weights, and the tests' tiny models cost nothing, so neither
gives the time face analysis takes. These three ONNX files are what insightface loads from an
antelopev2 folder (the same file names, inputs and outputs, routed by insightface's ``model_zoo`` to
the same classes, with their pre- and post-processing), doing the work of networks of the real sizes:

* ``glintr100.onnx``: IResNet-100 (stages of 3, 13, 30 and 3 blocks of widths 64-512, at 112 x 112 to a
  512-number embedding), the architecture of antelopev2's recognition model, with random weights;
* ``scrfd_10g_bnkps.onnx``: a ResNet backbone, feature pyramid and heads at strides 8/16/32 sized to
  SCRFD-10GF's compute (10 G multiply-adds at 640 x 480, so about 13.3 G at the 640 x 640 the
  pipeline detects at). It is not SCRFD's exact layout: its time stands for SCRFD's by the count;
* ``2d106det.onnx``: a MobileNet-v1-0.5-like network at 192 x 192 (about 0.1 G multiply-adds), of
  the class of antelopev2's landmark model, not its exact layout.

Random weights give random boxes, so the detector and the landmark model add their network's
output, scaled by 1e-30 (it is computed, and it cannot change a float32 value above 1e-23), to a
fixed answer: one face near the middle of the detector's input, 106 landmarks on a face outline.
The multiply-add count of each network is in :data:`MODEL_MACS` once the files are made.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

DETECT_SIZE = 640
# The one face the detector reports, in its 640 x 640 input: a box and its five keypoints.
FACE_BOX = (224.0, 176.0, 416.0, 432.0)
KPS_TEMPLATE = ((0.34, 0.46), (0.66, 0.46), (0.50, 0.64), (0.37, 0.82), (0.63, 0.82))  # of the box
FACE_STRIDE = 16
FACE_ANCHOR = 0
TINY = 1e-30
MODEL_MACS: dict[str, int] = {}


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)


class _IBlock(nn.Module):
    """IResNet's block: BN, conv 3x3, BN, PReLU, conv 3x3 (stride), BN, plus the shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), _conv(cin, cout), nn.BatchNorm2d(cout), nn.PReLU(cout),
                                  _conv(cout, cout, stride), nn.BatchNorm2d(cout))
        self.short = (nn.Sequential(_conv(cin, cout, stride, k=1), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())
        nn.init.constant_(self.body[-1].weight, 0.2)  # keep random activations finite over 49 blocks

    def forward(self, x):
        return self.body(x) + self.short(x)


class IResNet100(nn.Module):
    def __init__(self):
        super().__init__()
        layers, cin = [_conv(3, 64), nn.BatchNorm2d(64), nn.PReLU(64)], 64
        for width, depth in ((64, 3), (128, 13), (256, 30), (512, 3)):
            for i in range(depth):
                layers.append(_IBlock(cin, width, 2 if i == 0 else 1))
                cin = width
        layers.append(nn.BatchNorm2d(512))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(512 * 7 * 7, 512)
        self.out = nn.BatchNorm1d(512)

    def forward(self, x):
        return self.out(self.fc(self.features(x).flatten(1)))


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv(cin, cout, stride), nn.BatchNorm2d(cout), nn.ReLU(),
                                  _conv(cout, cout), nn.BatchNorm2d(cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else _conv(cin, cout, stride, k=1)

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def _face_outputs() -> list[torch.Tensor]:
    """SCRFD's nine outputs (scores, boxes, keypoints at strides 8, 16, 32) holding the one face."""
    x0, y0, x1, y1 = FACE_BOX
    scores, boxes, kps = [], [], []
    for stride in (8, 16, 32):
        cells = (DETECT_SIZE // stride) ** 2 * 2
        s, b, k = torch.zeros(cells, 1), torch.zeros(cells, 4), torch.zeros(cells, 10)
        if stride == FACE_STRIDE:
            cx, cy = ((x0 + x1) / 2) // stride, ((y0 + y1) / 2) // stride
            row = int(cy * (DETECT_SIZE // stride) + cx) * 2 + FACE_ANCHOR
            ax, ay = cx * stride, cy * stride
            s[row] = 0.9
            b[row] = torch.tensor([ax - x0, ay - y0, x1 - ax, y1 - ay]) / stride
            points = [(x0 + u * (x1 - x0) - ax, y0 + v * (y1 - y0) - ay) for u, v in KPS_TEMPLATE]
            k[row] = torch.tensor(points).flatten() / stride
        scores.append(s), boxes.append(b), kps.append(k)
    return scores + boxes + kps


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_conv(3, 24, 2), nn.ReLU(), _conv(24, 24), nn.ReLU(), _conv(24, 48), nn.ReLU(),
                                  nn.MaxPool2d(2))
        stages, cin = [], 48
        for width, depth, stride in ((48, 2, 1), (96, 3, 2), (160, 3, 2), (256, 3, 2)):
            blocks = [_Basic(cin if i == 0 else width, width, stride if i == 0 else 1) for i in range(depth)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(_conv(w, 96, k=1) for w in (96, 160, 256))
        self.smooth = nn.ModuleList(_conv(96, 96) for _ in range(3))
        self.head = nn.Sequential(_conv(96, 96), nn.ReLU(), _conv(96, 96), nn.ReLU(), _conv(96, 96), nn.ReLU())
        self.predict = nn.ModuleList(nn.Conv2d(96, 2 * n, 3, padding=1) for n in (1, 4, 10))
        for i, t in enumerate(_face_outputs()):
            self.register_buffer(f"answer{i}", t)

    def forward(self, x):
        x = self.stem(x)
        levels = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i:
                levels.append(x)
        feats = [lat(level) for lat, level in zip(self.lateral, levels)]
        for i in (1, 0):  # top-down
            feats[i] = feats[i] + nn.functional.interpolate(feats[i + 1], scale_factor=2.0)
        feats = [smooth(f) for smooth, f in zip(self.smooth, feats)]
        outs = [[], [], []]
        for f in feats:
            h = self.head(f)
            for kind, layer in enumerate(self.predict):
                width = layer.out_channels // 2
                outs[kind].append(layer(h).permute(0, 2, 3, 1).reshape(-1, width))
        flat = outs[0] + outs[1] + outs[2]
        return tuple(getattr(self, f"answer{i}") + TINY * torch.tanh(t) for i, t in enumerate(flat))


def _landmark_template() -> np.ndarray:
    """106 points over the unit square of a face box: the spec's outline (a U and two brows), the rest inside."""
    from ..face import FACE_POLYGON

    t = np.full((106, 2), 0.5, dtype=np.float32)
    contour, brows = FACE_POLYGON[:33], FACE_POLYGON[33:]
    for j, index in enumerate(contour):
        phi = np.pi * (1.0 - j / 32.0)
        t[index] = (0.5 + 0.48 * np.cos(phi), 0.3 + 0.68 * np.sin(phi))
    for j, index in enumerate(brows):
        u = 0.92 - 0.84 * j / (len(brows) - 1)
        t[index] = (u, 0.1 - 0.08 * np.sin(np.pi * u))
    inside = [i for i in range(106) if i not in FACE_POLYGON]
    for j, index in enumerate(inside):
        t[index] = (0.3 + 0.4 * (j % 8) / 7, 0.35 + 0.45 * (j // 8) / 7)
    return t


class Landmarks(nn.Module):
    def __init__(self):
        super().__init__()
        layers, cin = [_conv(3, 16, 2), nn.BatchNorm2d(16), nn.ReLU()], 16
        for cout, stride in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), *[(256, 1)] * 5, (512, 2),
                             (512, 1)):
            layers += [_conv(cin, cin, stride, groups=cin), nn.BatchNorm2d(cin), nn.ReLU(),
                       _conv(cin, cout, k=1), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(512, 212)
        # Insightface's Landmark crops a square of 1.5x the box's longer side to 192 px and reads
        # (v + 1) * 96 as crop pixels: the 192 x 256 box of FACE_BOX spans 96 x 128 px in the middle.
        t = _landmark_template()
        pixels = np.stack([48 + 96 * t[:, 0], 32 + 128 * t[:, 1]], axis=1)
        self.register_buffer("answer", torch.from_numpy(pixels / 96.0 - 1.0).float().reshape(1, 212))

    def forward(self, x):
        return self.answer + TINY * torch.tanh(self.fc(self.features(x).flatten(1)))


def count_macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolutions and linear layers of one forward pass."""
    total = 0

    def hook(layer, _inputs, output):
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            per_out = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            total += output.numel() * per_out
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(torch.zeros(shape))
    for h in handles:
        h.remove()
    return total


def make_real_size_antelopev2(folder: str | Path) -> Path:
    """Write the three files into ``folder`` (once) and fill :data:`MODEL_MACS`; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    det_outputs = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in (8, 16, 32)]
    specs = [("scrfd_10g_bnkps.onnx", Detector, (1, 3, DETECT_SIZE, DETECT_SIZE), det_outputs, None),
             ("2d106det.onnx", Landmarks, (1, 3, 192, 192), ["fc1"], None),
             ("glintr100.onnx", IResNet100, (1, 3, 112, 112), ["embedding"],
              {"input.1": {0: "batch"}, "embedding": {0: "batch"}})]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, make, shape, outputs, axes in specs:
            module = make().eval()
            MODEL_MACS[name] = count_macs(module, shape)
            target = folder / name
            if target.exists():
                continue
            with torch.no_grad():
                check = module(torch.randn(shape))
            if not all(torch.isfinite(t).all() for t in (check if isinstance(check, tuple) else (check,))):
                raise RuntimeError(f"the random {name} gives non-finite outputs")
            partial = folder / (name + ".partial")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter, on purpose (as the tests' tiny models)
                torch.onnx.export(module, (torch.zeros(shape),), str(partial), input_names=["input.1"],
                                  output_names=outputs, dynamic_axes=axes, opset_version=17, dynamo=False)
            partial.replace(target)
    return folder


def portrait(seed: int = 0, size: tuple[int, int] = (1024, 1024)) -> np.ndarray:
    """A smooth random RGB uint8 photo of ``size`` (height, width): a stand-in portrait."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8)
    from PIL import Image

    image = Image.fromarray(small).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(image).copy()
