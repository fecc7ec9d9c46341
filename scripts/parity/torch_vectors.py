"""Writes test/vectors/torch-randn.json: what torch.Generator("cpu").manual_seed(seed) draws.

Run by hand with torch installed (outside the repository's tooling):
    python scripts/parity/torch_vectors.py [out.json]

test/random.test.ts checks src/inference/random.ts (TORCH) against the file without torch.
Values are float32 read back as Python floats (exact); a draw of more than 64 values is stored as the
SHA-256 of its little-endian float32 bytes plus its first and last 8 values.
x86 builds of torch use the AVX2 kernel (AVX-512 machines too); ATEN_CPU_CAPABILITY=default
(the scalar kernel) differs in the last bits of some values, so the capability is recorded.
"""

import hashlib
import json
import sys

import torch

SEEDS = [0, 1, 42, 12345, 2147483647]
# Sizes below 16 (torch's double Box-Muller with a cached second value), exactly 16, 17 (the
# recomputed tail), and large ones (4x64x64: an SD latent; 624-word MT19937 refills in between).
SIZES = [1, 2, 3, 15, 16, 17, 31, 32, 33, 100, 16384, 65541]
# One generator through a list of calls: the cached value of a small draw carries over to the next
# small draw, and large draws continue the stream.
SEQUENCE = [1, 3, 16, 5, 17, 2, 1000, 1, 16384]
FULL_LIMIT = 64


def record(values: torch.Tensor) -> dict:
    flat = values.contiguous().view(-1)
    if flat.numel() <= FULL_LIMIT:
        return {"size": flat.numel(), "values": flat.tolist()}
    return {
        "size": flat.numel(),
        "sha256": hashlib.sha256(flat.numpy().astype("<f4").tobytes()).hexdigest(),
        "head": flat[:8].tolist(),
        "tail": flat[-8:].tolist(),
    }


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "test/vectors/torch-randn.json"
    fresh = []
    sequences = []
    for seed in SEEDS:
        for size in SIZES:
            g = torch.Generator("cpu").manual_seed(seed)
            fresh.append({"seed": seed, **record(torch.randn(size, generator=g, dtype=torch.float32))})
        g = torch.Generator("cpu").manual_seed(seed)
        sequences.append({"seed": seed, "draws": [record(torch.randn(n, generator=g, dtype=torch.float32)) for n in SEQUENCE]})
    data = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "fresh": fresh,
        "sequences": sequences,
    }
    with open(out, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
