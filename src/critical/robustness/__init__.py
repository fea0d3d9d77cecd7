"""Robustness of a trained image classifier: adversarial attacks and common corruptions.

Pure functions on tensors (no Lightning): the Lightning side is
:class:`critical.callbacks.robustness.RobustnessEvaluator`.

Conventions
-----------
Images are float tensors ``(N, C, H, W)`` in ``[0, 1]``; input normalization is a layer of the
model. Attacks and corruptions therefore work in pixel space and clamp to ``[0, 1]``. ``model``
is any callable ``nn.Module`` that maps such a batch to class logits.

Every evaluation runs the model in eval mode (each submodule's own ``training`` flag is restored
afterwards), never touches the ``.grad`` of the model's parameters (input gradients come from
:func:`torch.autograd.grad` w.r.t. the input only), works inside ``torch.inference_mode`` /
``torch.no_grad`` contexts (it re-enables autograd locally), and draws its randomness from its
own seeded :class:`torch.Generator` on the CPU, so results do not depend on the global RNG and
are the same on every device for a given seed, batch size and image order.

Adversarial attacks (L-infinity, untargeted, cross-entropy loss)
----------------------------------------------------------------
* :func:`fgsm` (Goodfellow et al., 2015): ``x + eps * sign(grad)``.
* :func:`pgd` (Madry et al., 2018): optional uniform random start in the eps-ball, then ``steps``
  signed-gradient steps of size ``step_size``, each projected onto the eps-ball and ``[0, 1]``;
  the final iterate is evaluated. Defaults: ``eps=8/255``, 10 steps of ``2/255``, random start.

Common corruptions (Hendrycks & Dietterich, ICLR 2019)
-----------------------------------------------------
:data:`CORRUPTIONS` re-implements, in batched torch, a subset of the CIFAR-10-C corruptions with
the *CIFAR-10-C* severity parameters of ``make_cifar_c.py`` (hendrycks/robustness), under the
names CIFAR-10-C uses:

===================  ==========================================================================
name                 severity parameters (1..5) and method
===================  ==========================================================================
gaussian_noise       std 0.04, 0.06, 0.08, 0.09, 0.10; ``x + N(0, std)``
shot_noise           rate 500, 250, 100, 75, 50; ``Poisson(x * rate) / rate``
impulse_noise        amount 0.01, 0.02, 0.03, 0.05, 0.07; salt & pepper per element (50/50)
defocus_blur         disk (radius, alias sigma) (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2),
                     (1.5, 0.1); anti-aliased disk kernel, reflect-101 border (as cv2)
zoom_blur            zoom factors ``np.arange(1, z, 0.01)`` for z = 1.06, 1.11, 1.16, 1.21, 1.26;
                     mean of the image and its bilinear centre zooms (as ``scipy.ndimage.zoom``)
brightness           +0.05, +0.1, +0.15, +0.2, +0.3 on V of HSV
contrast             factor 0.75, 0.5, 0.4, 0.3, 0.15 around the per-image channel means
pixelate             scale 0.95, 0.9, 0.85, 0.75, 0.65; PIL ``BOX`` down- and up-sampling
jpeg_compression     quality 80, 65, 58, 50, 40 (PIL, as the reference)
speckle_noise*       std 0.06, 0.1, 0.12, 0.16, 0.2; ``x + x * N(0, std)``
gaussian_blur*       sigma 0.4, 0.6, 0.7, 0.8, 1.0; truncate 4, nearest border (as skimage)
saturate*            (scale, shift) (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2) on S of HSV
===================  ==========================================================================

``*``: one of CIFAR-10-C's four "extra" corruptions; the other nine are among the 15 of the
benchmark. Left out: glass_blur (a sequential pixel-swap loop), motion_blur and snow (ImageMagick
motion blur), frost (needs the frost photographs), fog (plasma fractal), spatter and
elastic_transform (OpenCV-specific pipelines). The mean over :data:`DEFAULT_CORRUPTIONS` (the
nine benchmark ones) is therefore *not* the CIFAR-10-C mean corruption accuracy; results are
labelled ``"synthetic"``. Differences to the reference: the reference quantizes every image to
uint8 (and PIL rounds between its two resampling passes); ours stay float (only JPEG goes through
uint8), and the random draws differ (torch, not numpy), so per-image values differ while the
distributions match.

For the official data, :func:`load_cifar10c` / :func:`cifar10c_accuracy` read the CIFAR-10-C
``<name>.npy`` files (``(50000, 32, 32, 3)`` uint8: 5 severities x 10,000 test images, severity 1
first) and ``labels.npy``.

Example:
    >>> import torch
    >>> from critical.robustness import corrupt, evaluate_robustness
    >>> x = torch.rand(8, 3, 32, 32)
    >>> corrupt(x, "gaussian_noise", severity=3, seed=0).shape
    torch.Size([8, 3, 32, 32])
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> y = torch.randint(0, 10, (8,))
    >>> r = evaluate_robustness(model, x, y, corruptions=["contrast"], severities=[1])
    >>> sorted(k for k in r if k.endswith("_acc"))
    ['clean_acc', 'corruption_acc', 'fgsm_acc', 'pgd_acc']

Layout
------
* :mod:`critical.robustness.attacks`: :func:`fgsm`, :func:`pgd`, :func:`accuracy`,
  :func:`adversarial_accuracy`.
* :mod:`critical.robustness.corruptions`: :data:`CORRUPTIONS`, :func:`corrupt`,
  :func:`corruption_accuracy`.
* :mod:`critical.robustness.cifar10c`: :func:`load_cifar10c`, :func:`cifar10c_accuracy`.
* :mod:`critical.robustness.evaluate`: :func:`evaluate_robustness` (everything at once).
* :mod:`critical.robustness._common`: constants, :func:`eval_mode` and shared helpers.
"""

from __future__ import annotations

from critical.robustness._common import (
    CIFAR10C_CORRUPTIONS,
    CIFAR10C_EXTRA_CORRUPTIONS,
    SEVERITIES,
    eval_mode,
)
from critical.robustness.attacks import ATTACKS, accuracy, adversarial_accuracy, fgsm, pgd
from critical.robustness.cifar10c import cifar10c_accuracy, load_cifar10c
from critical.robustness.corruptions import (
    CORRUPTIONS,
    DEFAULT_CORRUPTIONS,
    corrupt,
    corruption_accuracy,
)
from critical.robustness.evaluate import evaluate_robustness

__all__ = [
    "ATTACKS",
    "CIFAR10C_CORRUPTIONS",
    "CIFAR10C_EXTRA_CORRUPTIONS",
    "CORRUPTIONS",
    "DEFAULT_CORRUPTIONS",
    "SEVERITIES",
    "accuracy",
    "adversarial_accuracy",
    "cifar10c_accuracy",
    "corrupt",
    "corruption_accuracy",
    "eval_mode",
    "evaluate_robustness",
    "fgsm",
    "load_cifar10c",
    "pgd",
]
