"""Time of one optimizer update on ResNet-50's parameters: big_batch vs optax, in one process.

Each update is one jitted call (params, state, grads) -> (params + updates, state) with params
and state donated, on the 161 leaves of ResNet-50 (25.6M float32 parameters). Optimizers run
round-robin, one step each per round, so machine load affects all alike. The table gives the
median ms per step, the ratio to the optax counterpart, the bytes an update must move at least
(each float32 array it reads or writes, once), and the fraction of this machine's memory
bandwidth that this minimum at the measured speed represents. The bandwidth is measured in the
same rounds with a donated x -> x*a + b over a 256 MB float32 array (read + written). "temp
buffers" is XLA's scratch memory for the step: a parameter-sized buffer there is an extra
write and read of every parameter, in memory that is fresh at every call (optax's LAMB and
LARS keep their update direction there, as it feeds both the norm and the scaled update;
big_batch's recompute it, src/big_batch/optim/two_pass.py). The machine's load changes every
figure several-fold (2 shared cores): compare the ratios, measured in the same rounds.

    python benchmarks/optimizer_step.py [--rounds 15]
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from big_batch import optim

# Arrays read or written per parameter, each 4 bytes: w, g and the moments read; w and the
# moments written. LAMB and AdamW: w, g, m, v -> w, m, v. LARS: w, g, trace -> w, trace.
# NovoGrad: w, g, m -> w, m (its second moment is one scalar per leaf).
ARRAYS_MOVED = {"lamb": 7, "lars": 5, "novograd": 5, "adamw": 7}

OPTIMIZERS = {
    "big_batch lamb": (lambda: optim.OPTIMIZERS["lamb"](1e-3, weight_decay=0.01), "optax lamb"),
    "big_batch lars": (lambda: optim.OPTIMIZERS["lars"](1.0, weight_decay=1e-4), "optax lars"),
    "big_batch lars mlperf": (
        lambda: optim.OPTIMIZERS["lars"](1.0, weight_decay=1e-4, ratio="mlperf"), "optax lars"),
    "big_batch novograd": (
        lambda: optim.OPTIMIZERS["novograd"](1e-3, b1=0.9, b2=0.25, eps=1e-6, weight_decay=1e-3),
        "optax novograd"),
    "optax lamb": (lambda: optax.lamb(1e-3, weight_decay=0.01), None),
    "optax lars": (lambda: optax.lars(1.0, weight_decay=1e-4), None),
    "optax novograd": (lambda: optax.novograd(1e-3, weight_decay=1e-3), None),
    "optax adamw": (lambda: optax.adamw(1e-3, weight_decay=0.01), None),
}


def resnet50_shapes():
  """Leaf shapes of ResNet-50 v1.5 (He et al. 2016): HWIO conv kernels, BN scale and bias."""
  shapes = []

  def conv_bn(size, cin, cout):
    shapes.extend([(size, size, cin, cout), (cout,), (cout,)])

  conv_bn(7, 3, 64)
  cin = 64
  for blocks, width in ((3, 64), (4, 128), (6, 256), (3, 512)):
    for block in range(blocks):
      conv_bn(1, cin, width)
      conv_bn(3, width, width)
      conv_bn(1, width, 4 * width)
      if block == 0:
        conv_bn(1, cin, 4 * width)  # projection shortcut
      cin = 4 * width
  shapes.extend([(2048, 1000), (1000,)])  # classifier
  return shapes


def make_step(tx):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


def timed(fn, *args):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=15)
  args = parser.parse_args()

  shapes = resnet50_shapes()
  size = sum(int(np.prod(s)) for s in shapes)
  rng = np.random.default_rng(0)
  params0 = {f"{i:03d}": 0.05 * rng.standard_normal(s, dtype=np.float32)
             for i, s in enumerate(shapes)}
  grads = {k: jnp.asarray(1e-3 * rng.standard_normal(p.shape, dtype=np.float32))
           for k, p in params0.items()}
  print(f"ResNet-50 parameter tree: {len(shapes)} leaves, {size:,} float32 parameters; "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s), {args.rounds} rounds")

  runs = {}
  for name, (factory, _) in OPTIMIZERS.items():
    tx = factory()
    params = jax.tree.map(jnp.asarray, params0)
    state = tx.init(params)
    start = time.perf_counter()
    step = make_step(tx).lower(params, state, grads).compile()
    runs[name] = {"step": step, "carry": (params, state), "times": [],
                  "compile": time.perf_counter() - start,
                  "temp": step.memory_analysis().temp_size_in_bytes}
    runs[name]["carry"], _ = timed(step, params, state, grads)

  stream = jax.jit(lambda x: x * 1.0001 + 0.5, donate_argnums=0)
  x = jnp.zeros((64 * 2 ** 20,), jnp.float32)  # 256 MB
  x, _ = timed(stream, x)
  stream_times = []

  for _ in range(args.rounds):
    for run in runs.values():
      run["carry"], seconds = timed(run["step"], *run["carry"], grads)
      run["times"].append(seconds)
    x, seconds = timed(stream, x)
    stream_times.append(seconds)

  bandwidth = 2 * x.nbytes / np.median(stream_times)
  print(f"memory bandwidth (x -> x*a+b, 256 MB read + written): {bandwidth / 1e9:.1f} GB/s")
  print(f"{'optimizer':<24}{'ms/step':>9}{'vs optax':>10}{'min bytes':>11}{'achieved':>10}"
        f"{'of bw':>7}{'temp buffers':>14}{'compile s':>11}")
  for name, (_, counterpart) in OPTIMIZERS.items():
    ms = 1e3 * np.median(runs[name]["times"])
    ratio = f"{ms / (1e3 * np.median(runs[counterpart]['times'])):.2f}" if counterpart else ""
    moved = 4 * ARRAYS_MOVED[name.split()[1]] * size
    achieved = moved / (ms / 1e3)
    print(f"{name:<24}{ms:>9.1f}{ratio:>10}{moved / 1e6:>9.0f}MB{achieved / 1e9:>7.1f}GB/s"
          f"{achieved / bandwidth:>7.0%}{runs[name]['temp'] / 1e6:>12.0f}MB"
          f"{runs[name]['compile']:>11.1f}")


if __name__ == "__main__":
  main()
