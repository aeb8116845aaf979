"""Make docs/before_after.png: blurred | default model | sharp on the bundled astronaut photo.

    python docs/make_before_after.py [--seed 1] [--out docs/before_after.png]

The photo is not in the training split; the blur is the trainer's camera-shake synthesis
(noise and JPEG included) with a fixed seed, its kernel drawn as an inset. Prints the PSNRs
quoted in the README.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from deblur.benchmarks.metrics import psnr
from deblur.runtime import Deblurrer, default_model_path
from deblur.train.blur import BlurConfig, degrade

SIDE = 200  # px of each panel


def _panel(image: np.ndarray, label: str) -> np.ndarray:
    bar = np.full((24, SIDE, 3), 255, np.uint8)
    cv2.putText(bar, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="docs/before_after.png")
    args = parser.parse_args()
    photo = cv2.imread(str(default_model_path().parent.parent / "assets" / "astronaut.jpg"))
    blurred, kernel = degrade(photo, np.random.default_rng(args.seed), BlurConfig())
    restored = Deblurrer(provider="cpu")(blurred)
    # The face and helmet ring: where the blur and its removal are easiest to see.
    window = np.s_[20:300, 120:400]
    p_blur, p_restored = psnr(blurred, photo, crop_border=15), psnr(restored, photo, crop_border=15)
    inset = cv2.resize(kernel / kernel.max(), (56, 56), interpolation=cv2.INTER_NEAREST)
    left = _panel(blurred[window], f"blurred {p_blur:.2f} dB")
    left[-60:-4, 4:60] = (np.clip(inset, 0, 1) * 255).astype(np.uint8)[:, :, None]
    panels = [left, _panel(restored[window], f"default model {p_restored:.2f} dB"), _panel(photo[window], "sharp")]
    sheet = np.hstack([np.pad(p, ((0, 0), (0, 6), (0, 0)), constant_values=255) for p in panels])[:, :-6]
    cv2.imwrite(args.out, sheet)
    print(f"{args.out}: seed {args.seed}, blurred {p_blur:.2f} dB -> restored {p_restored:.2f} dB (whole photo, "
          "15 px border cropped)")


if __name__ == "__main__":
    main()
