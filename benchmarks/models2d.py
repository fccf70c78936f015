"""The built-in models on 2D grids: training and inference samples/s and peak memory at 32², 64² and 128².

Each (model, grid) runs in a fresh process (peak RSS is a per-process high-water mark): the model is built through
the catalogue for one channel and no PDE parameters, then timed on random normalized inputs at the torch thread
count of this machine:

- train samples/s: forward, MSE loss, backward and an AdamW step on batches of `--batch` (after 2 warm-up steps);
- infer samples/s: a no-grad forward pass of the same batch;
- peak RSS (MiB): the process's maximum resident set after both, torch and the model included.

The model settings are the 2D flagships' FNO (`specs/ns2d.yaml`) and 2D versions of the 1D blocks: the latent
operator with `num_modes` 4 (at most tokens / 2 per axis in 2D at 32²) and `unet_small`.

    .venv/bin/python benchmarks/models2d.py              # ≈ 3 min on 2 idle cores
    .venv/bin/python benchmarks/models2d.py --grids 32 --repeats 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _ups import provenance, provenance_line

MODELS = {
    "latent_operator": {"patch_size": 4, "latent_dim": 64, "num_layers": 4, "num_modes": 4, "cond_dim": 32,
                        "mlp_ratio": 2, "decoder_dim": 32, "decoder_kernel": 5},
    "fno": {"width": 32, "num_layers": 4, "num_modes": 12, "cond_dim": 16, "projection_dim": 64},
    "unet": {"width": 32, "multipliers": [1, 2, 4], "blocks_per_level": 1, "cond_dim": 32, "kernel": 3,
             "norm_groups": 8},
}  # fmt: skip

ONE = """
import json, resource, sys, time, torch
from ups import catalog
from ups.plugin import ModelIO
kind, grid, batch, repeats, cfg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
row = catalog.get("models", kind)
full = {k: v for k, v in vars(catalog.load(row.config)()).items() if k != "kind"}
full.update(cfg)
io = ModelIO(spatial_dims=2, in_channels=1, out_channels=1, num_params=0, grid=(grid, grid), periodic=(True, True))
model = catalog.load(row.build)(full, io)
g = torch.Generator().manual_seed(0)
x, y = torch.randn(batch, 1, grid, grid, generator=g), torch.randn(batch, 1, grid, grid, generator=g)
p, dt = torch.zeros(batch, 0), torch.zeros(batch)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
def step():
    loss = (model(x, p, dt) - y).square().mean()
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(2): step()
t = time.perf_counter()
for _ in range(repeats): step()
train = batch * repeats / (time.perf_counter() - t)
with torch.no_grad():
    model(x, p, dt)
    t = time.perf_counter()
    for _ in range(repeats): model(x, p, dt)
    infer = batch * repeats / (time.perf_counter() - t)
print(json.dumps({"params": sum(q.numel() for q in model.parameters()), "train": train, "infer": infer,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(kind: str, grid: int, batch: int, repeats: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", ONE, kind, str(grid), str(batch), str(repeats), json.dumps(MODELS[kind])],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(
        f"{'model':16} {'grid':>5} {'params':>9} {'train samples/s':>16} {'infer samples/s':>16} {'peak RSS MiB':>13}"
    )
    for kind in MODELS:
        for grid in args.grids:
            r = {"model": kind, "grid": grid, **measure(kind, grid, args.batch, args.repeats)}
            rows.append(r)
            if "error" in r:
                print(f"{kind:16} {grid:>4}²  {r['error']}")
            else:
                print(
                    f"{kind:16} {grid:>4}² {r['params']:>9} {r['train']:>16.1f} {r['infer']:>16.1f} {r['rss_mib']:>13.0f}"
                )
    print(provenance_line())
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, **provenance()}, indent=1))


if __name__ == "__main__":
    main()
