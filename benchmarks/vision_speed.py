"""ResNet-18 training throughput (images/s) at 32×32 and 224×224: a plain fp32 eager loop versus
bf16 autocast + channels_last + torch.compile, in the same process on the same device.

    python benchmarks/vision_speed.py [--device cuda] [--steps 30] [--sizes 32,224] [--batch 128]

Meant for a GPU (issue 3's quality bar); on a CPU it runs but says so, and compile is skipped unless --compile.
Synthetic inputs (random images and labels): this measures the training step, not data loading.
Writes benchmarks/out/vision_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepkit import create_model

OUT = Path(__file__).parent / "out"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_s(size: int, batch: int, steps: int, device: torch.device, fast: bool, compile_: bool) -> float:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=1000).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    step_model = torch.compile(model) if (fast and compile_) else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = torch.bfloat16

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=fast):
            loss = F.cross_entropy(step_model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(max(3, steps // 5)):  # warm-up (and compilation)
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--sizes", default="32,224")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--compile", action="store_true", help="also compile on CPU (always on for CUDA)")
    args = ap.parse_args()
    device = torch.device(args.device)
    compile_ = device.type == "cuda" or args.compile
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        plain = images_per_s(size, args.batch, args.steps, device, fast=False, compile_=False)
        fast = images_per_s(size, args.batch, args.steps, device, fast=True, compile_=compile_)
        row = {
            "size": size,
            "batch": args.batch,
            "fp32_eager_img_s": round(plain, 1),
            "bf16_channels_last" + ("_compile" if compile_ else "") + "_img_s": round(fast, 1),
            "speedup": round(fast / plain, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    OUT.mkdir(exist_ok=True)
    env = {"device": name, "torch": str(torch.__version__), "commit": commit, "date": time.strftime("%F")}
    (OUT / "vision_speed.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    if device.type != "cuda":
        print("note: measured on CPU; the issue's figure is for a GPU")


if __name__ == "__main__":
    main()
